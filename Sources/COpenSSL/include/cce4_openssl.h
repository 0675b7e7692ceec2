// cce4long: the C fence around OpenSSL's libcrypto.
//
// Why a shim: Swift cannot call C macros or variadic functions, and OpenSSL 3's
// provider API (EVP_KDF with OSSL_PARAM arrays, EVP_CIPHER_CTX_ctrl) is easiest to
// use correctly from C. Each function here does one thing, takes plain pointers and
// lengths, and returns 1 on success and 0 on failure (OpenSSL's own convention).
// Nothing else lives here: formats and policy are Swift's job.
#ifndef CCE4_OPENSSL_H
#define CCE4_OPENSSL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An opaque AES-256-GCM context with its key schedule already expanded.
typedef struct cce4_gcm cce4_gcm;

/// Makes a context for AES-256-GCM under a 32-byte key (EVP_CIPHER_CTX_new +
/// EVP_{En,De}cryptInit_ex). `encrypt` is 1 to seal, 0 to open. NULL on failure.
cce4_gcm *cce4_gcm_new(const uint8_t key[32], int encrypt);

/// Frees the context; OpenSSL cleanses the key schedule (EVP_CIPHER_CTX_free).
void cce4_gcm_free(cce4_gcm *ctx);

/// Seals `len` bytes of `in` with a 12-byte nonce and no associated data, writing
/// `len` bytes to `out` (which may equal `in`) and the 16-byte tag to `tag`.
int cce4_gcm_seal(cce4_gcm *ctx, const uint8_t nonce[12],
                  const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]);

/// Opens `len` bytes of `in` with a 12-byte nonce and no associated data, writing
/// `len` bytes of plaintext straight to `out` (the caller's buffer; may equal `in`).
/// Returns 0 when the tag does not verify; `out` then holds unauthenticated bytes
/// that the caller must wipe and never use.
int cce4_gcm_open(cce4_gcm *ctx, const uint8_t nonce[12],
                  const uint8_t *in, size_t len, const uint8_t tag[16], uint8_t *out);

/// HKDF-SHA256 (RFC 5869) extract-and-expand via EVP_KDF "HKDF".
int cce4_hkdf_sha256(const uint8_t *ikm, size_t ikm_len,
                     const uint8_t *salt, size_t salt_len,
                     const uint8_t *info, size_t info_len,
                     uint8_t *out, size_t out_len);

/// SHA-256 one-shot (EVP_Digest).
int cce4_sha256(const uint8_t *data, size_t len, uint8_t out[32]);

/// An incremental SHA-256 (EVP_MD_CTX).
typedef struct cce4_sha256_ctx cce4_sha256_ctx;
cce4_sha256_ctx *cce4_sha256_new(void);
int cce4_sha256_update(cce4_sha256_ctx *ctx, const uint8_t *data, size_t len);
int cce4_sha256_final(cce4_sha256_ctx *ctx, uint8_t out[32]);
void cce4_sha256_free(cce4_sha256_ctx *ctx);

/// Fills `out` from OpenSSL's CSPRNG (RAND_bytes), in chunks that fit its int length.
int cce4_random_bytes(uint8_t *out, size_t len);

/// Overwrites `len` bytes at `p` in a way the compiler may not elide (OPENSSL_cleanse).
void cce4_cleanse(void *p, size_t len);

/// Constant-time equality of two `len`-byte buffers (CRYPTO_memcmp == 0).
int cce4_ct_equal(const void *a, const void *b, size_t len);

/// The first queued OpenSSL error as text, for logs (never contains key material).
/// Writes a NUL-terminated string into `buf` and clears the error queue.
void cce4_last_error(char *buf, size_t buf_len);


// MARK: - Wallet primitives (secp256k1 ECDSA, HMAC, keystore KDFs and cipher)

/// secp256k1: the 65-byte uncompressed public key (0x04 || X || Y) of a 32-byte private
/// scalar (EC_POINT_mul with the generator). 0 if the scalar is 0 or not below the order n.
int cce4_secp256k1_pubkey(const uint8_t priv[32], uint8_t pub[65]);

/// secp256k1 deterministic ECDSA (RFC 6979, HMAC-SHA256: the nonce eth-keys and
/// libsecp256k1 derive, so signatures agree byte for byte) over a 32-byte message hash:
/// r = (kG).x mod n, s = k^-1 (e + r d) mod n, then s normalised to the lower half of the
/// order (s > n/2 becomes n - s, flipping the recovery id), as Ethereum requires. Writes
/// r || s (big-endian, 32 bytes each) and the recovery id 0..3 (bit 0: parity of R.y after
/// normalisation; bit 1: R.x >= n). Every intermediate holding key-derived bytes is cleansed.
int cce4_secp256k1_sign(const uint8_t priv[32], const uint8_t hash[32], uint8_t sig[64], int *recid);

/// secp256k1 public-key recovery (SEC 1 v2 §4.1.6): the key Q with which (r, s) over
/// `hash` verifies, given the recovery id 0..3. 0 if r or s is 0 or >= n, if no curve
/// point has that x, or if Q would be the point at infinity. Does not judge high s.
int cce4_secp256k1_recover(const uint8_t hash[32], const uint8_t sig[64], int recid, uint8_t pub[65]);

/// scrypt (RFC 7914) via EVP_PBE_scrypt; `maxmem` bounds the memory it may use.
int cce4_scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                uint64_t n, uint64_t r, uint64_t p, uint64_t maxmem, uint8_t *out, size_t out_len);

/// PBKDF2-HMAC-SHA256 (PKCS5_PBKDF2_HMAC).
int cce4_pbkdf2_sha256(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                       uint32_t iterations, uint8_t *out, size_t out_len);

/// AES-128-CTR with a 16-byte initial counter block (EVP_aes_128_ctr); encrypting and
/// decrypting are the same operation. `out` may equal `in`.
int cce4_aes128_ctr(const uint8_t key[16], const uint8_t iv[16], const uint8_t *in, size_t len, uint8_t *out);

// ---- Attestation: X.509, CRLs, ECDSA over raw keys ----
// Why here: X509_STORE verification with CRLs and an explicit time, and EC keys from raw
// points, need OpenSSL's macros and OSSL_PARAM builders; Swift does the formats and policy.

/// An opaque parsed X.509 certificate (X509).
typedef struct cce4_x509 cce4_x509;
/// Parses exactly `len` bytes of DER (d2i_X509); NULL if malformed or if bytes trail.
cce4_x509 *cce4_x509_from_der(const uint8_t *der, size_t len);
void cce4_x509_free(cce4_x509 *cert);

/// The contents of the extension with dotted OID `oid` (X509_get_ext_by_OBJ): copies up to
/// `cap` bytes into `out` and sets `*len` to the full length. 1 found, 0 absent, -1 error.
int cce4_x509_extension(const cce4_x509 *cert, const char *oid, uint8_t *out, size_t cap, size_t *len);

/// The subject's (issuer = 0) or issuer's (issuer = 1) common name, NUL-terminated in `buf`
/// (X509_NAME_get_text_by_NID). Returns its length, or -1 if there is none or it does not fit.
int cce4_x509_common_name(const cce4_x509 *cert, int issuer, char *buf, size_t buf_len);

/// Verifies an ECDSA signature, given as big-endian r and s of `scalar_len` bytes each,
/// over SHA-`hash_bits` (256 or 384) of `msg`, with the certificate's EC public key.
/// 1 valid, 0 invalid, -1 error (not an EC key, bad lengths).
int cce4_x509_ecdsa_verify(const cce4_x509 *cert, int hash_bits, const uint8_t *msg, size_t msg_len,
                           const uint8_t *r, const uint8_t *s, size_t scalar_len);

/// Same, with a raw public key: `point` is X||Y (64 bytes for P-256, 96 for P-384).
int cce4_ecdsa_verify_raw(const uint8_t *point, size_t point_len, int hash_bits,
                          const uint8_t *msg, size_t msg_len,
                          const uint8_t *r, const uint8_t *s, size_t scalar_len);

/// A fresh P-256 key pair: `priv` is the 32-byte big-endian scalar, `point` X||Y (EVP_PKEY_Q_keygen).
int cce4_p256_generate(uint8_t priv[32], uint8_t point[64]);
/// ECDSA P-256/SHA-256 signature of `msg` by `priv`, as big-endian r||s (64 bytes).
int cce4_p256_sign(const uint8_t priv[32], const uint8_t *msg, size_t msg_len, uint8_t rs[64]);

/// An opaque parsed CRL (X509_CRL).
typedef struct cce4_crl cce4_crl;
/// Parses exactly `len` bytes of DER (d2i_X509_CRL); NULL if malformed.
cce4_crl *cce4_crl_from_der(const uint8_t *der, size_t len);
void cce4_crl_free(cce4_crl *crl);

/// Verifies `leaf` up to the single trust anchor `root` through the `untrusted`
/// intermediates at the Unix time `at` (X509_STORE + X509_VERIFY_PARAM_set_time).
/// `crl_mode` 0: no revocation check; 1: the leaf must have a valid, unexpired CRL from its
/// issuer and not be listed (X509_V_FLAG_CRL_CHECK); 2: every certificate of the chain
/// must (| X509_V_FLAG_CRL_CHECK_ALL). Returns 1
/// valid, 0 invalid with `*error` set to the X509_V_ERR code, -1 on internal error.
int cce4_x509_verify_chain(const cce4_x509 *leaf,
                           const cce4_x509 *const *untrusted, size_t n_untrusted,
                           const cce4_x509 *root,
                           const cce4_crl *const *crls, size_t n_crls, int crl_mode,
                           int64_t at, int *error);

/// The text of an X509_V_ERR code (X509_verify_cert_error_string), NUL-terminated.
void cce4_x509_error_string(int error, char *buf, size_t buf_len);


// MARK: - Key release (attested ECDHE): X25519, SHA-512, HMAC-SHA256

/// A fresh X25519 key pair (EVP_PKEY_Q_keygen "X25519"): the 32-byte private key and the
/// 32-byte public key (RFC 7748 encodings).
int cce4_x25519_generate(uint8_t priv[32], uint8_t pub[32]);
/// X25519(priv, peer) into `shared` (EVP_PKEY_derive). 0 when the peer key is malformed or
/// the result is all zeros (a low-order peer point, RFC 7748 §6.1).
int cce4_x25519_derive(const uint8_t priv[32], const uint8_t peer[32], uint8_t shared[32]);
/// SHA-512 one-shot (EVP_Digest).
int cce4_sha512(const uint8_t *data, size_t len, uint8_t out[64]);
/// HMAC-SHA256 one-shot (EVP_Q_mac).
int cce4_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t out[32]);

#ifdef __cplusplus
}
#endif
#endif
