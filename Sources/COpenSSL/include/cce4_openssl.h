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

/// secp256k1 ECDSA over a 32-byte message hash with the caller's nonce `k` (the caller
/// derives it by RFC 6979): r = (kG).x mod n, s = k^-1 (e + r d) mod n, then s is
/// normalised to the lower half of the order (s > n/2 becomes n - s, flipping the
/// recovery id), as Ethereum requires. Writes r || s (big-endian, 32 bytes each) and the
/// recovery id 0..3 (bit 0: parity of R.y after normalisation; bit 1: R.x >= n).
/// Returns 0 when k is unusable (0, >= n, or r or s came out 0): try the next k.
int cce4_secp256k1_sign(const uint8_t priv[32], const uint8_t hash[32], const uint8_t k[32],
                        uint8_t sig[64], int *recid);

/// secp256k1 public-key recovery (SEC 1 v2 §4.1.6): the key Q with which (r, s) over
/// `hash` verifies, given the recovery id 0..3. 0 if r or s is 0 or >= n, if no curve
/// point has that x, or if Q would be the point at infinity. Does not judge high s.
int cce4_secp256k1_recover(const uint8_t hash[32], const uint8_t sig[64], int recid, uint8_t pub[65]);

/// HMAC-SHA256 one-shot (HMAC()).
int cce4_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t out[32]);

/// scrypt (RFC 7914) via EVP_PBE_scrypt; `maxmem` bounds the memory it may use.
int cce4_scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                uint64_t n, uint64_t r, uint64_t p, uint64_t maxmem, uint8_t *out, size_t out_len);

/// PBKDF2-HMAC-SHA256 (PKCS5_PBKDF2_HMAC).
int cce4_pbkdf2_sha256(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                       uint32_t iterations, uint8_t *out, size_t out_len);

/// AES-128-CTR with a 16-byte initial counter block (EVP_aes_128_ctr); encrypting and
/// decrypting are the same operation. `out` may equal `in`.
int cce4_aes128_ctr(const uint8_t key[16], const uint8_t iv[16], const uint8_t *in, size_t len, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
