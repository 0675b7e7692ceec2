// cce4long: OpenSSL shim. See include/cce4_openssl.h for why each function exists.
#include "cce4_openssl.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

struct cce4_gcm {
    EVP_CIPHER_CTX *ctx;
    int encrypt;
};

// Fetched once: implicit fetches (EVP_aes_256_gcm()) redo a provider lookup on every
// init in OpenSSL 3, which costs more than decrypting a small segment.
static EVP_CIPHER *cached_gcm(void) {
    static EVP_CIPHER *cipher = NULL;
    EVP_CIPHER *c = __atomic_load_n(&cipher, __ATOMIC_ACQUIRE);
    if (c != NULL) return c;
    c = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (c == NULL) return NULL;
    EVP_CIPHER *expected = NULL;
    if (!__atomic_compare_exchange_n(&cipher, &expected, c, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        EVP_CIPHER_free(c);
        return expected;
    }
    return c;
}

cce4_gcm *cce4_gcm_new(const uint8_t key[32], int encrypt) {
    EVP_CIPHER *cipher = cached_gcm();
    if (cipher == NULL) return NULL;
    cce4_gcm *g = OPENSSL_zalloc(sizeof(*g));
    if (g == NULL) return NULL;
    g->ctx = EVP_CIPHER_CTX_new();
    g->encrypt = encrypt ? 1 : 0;
    if (g->ctx == NULL ||
        EVP_CipherInit_ex(g->ctx, cipher, NULL, NULL, NULL, g->encrypt) != 1 ||
        EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_CipherInit_ex(g->ctx, NULL, NULL, key, NULL, g->encrypt) != 1) {
        cce4_gcm_free(g);
        return NULL;
    }
    return g;
}

void cce4_gcm_free(cce4_gcm *g) {
    if (g == NULL) return;
    EVP_CIPHER_CTX_free(g->ctx);
    OPENSSL_free(g);
}

// EVP takes int lengths; segments are far smaller, but refuse rather than truncate.
static int fits_int(size_t len) { return len <= (size_t)INT_MAX; }

int cce4_gcm_seal(cce4_gcm *g, const uint8_t nonce[12],
                  const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]) {
    int outl = 0, finl = 0;
    if (g == NULL || !g->encrypt || !fits_int(len)) return 0;
    if (EVP_CipherInit_ex(g->ctx, NULL, NULL, NULL, nonce, 1) != 1) return 0;
    if (len > 0 && EVP_EncryptUpdate(g->ctx, out, &outl, in, (int)len) != 1) return 0;
    if (EVP_EncryptFinal_ex(g->ctx, out + outl, &finl) != 1) return 0;
    if ((size_t)(outl + finl) != len) return 0;
    return EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
}

int cce4_gcm_open(cce4_gcm *g, const uint8_t nonce[12],
                  const uint8_t *in, size_t len, const uint8_t tag[16], uint8_t *out) {
    int outl = 0, finl = 0;
    uint8_t tag_copy[16];
    if (g == NULL || g->encrypt || !fits_int(len)) return 0;
    memcpy(tag_copy, tag, 16);  // the ctrl takes a non-const pointer
    if (EVP_CipherInit_ex(g->ctx, NULL, NULL, NULL, nonce, 0) != 1) return 0;
    if (len > 0 && EVP_DecryptUpdate(g->ctx, out, &outl, in, (int)len) != 1) return 0;
    if (EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_SET_TAG, 16, tag_copy) != 1) return 0;
    if (EVP_DecryptFinal_ex(g->ctx, out + outl, &finl) != 1) {
        ERR_clear_error();  // a bad tag is an expected outcome, not an OpenSSL fault
        return 0;
    }
    return (size_t)(outl + finl) == len;
}

static EVP_KDF *cached_hkdf(void) {
    static EVP_KDF *kdf = NULL;
    EVP_KDF *k = __atomic_load_n(&kdf, __ATOMIC_ACQUIRE);
    if (k != NULL) return k;
    k = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (k == NULL) return NULL;
    EVP_KDF *expected = NULL;
    if (!__atomic_compare_exchange_n(&kdf, &expected, k, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        EVP_KDF_free(k);
        return expected;
    }
    return k;
}

int cce4_hkdf_sha256(const uint8_t *ikm, size_t ikm_len,
                     const uint8_t *salt, size_t salt_len,
                     const uint8_t *info, size_t info_len,
                     uint8_t *out, size_t out_len) {
    EVP_KDF *kdf = cached_hkdf();
    if (kdf == NULL) return 0;
    EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(kdf);
    if (kctx == NULL) return 0;
    // OSSL_PARAM wants non-const pointers; the KDF only reads them.
    static const uint8_t empty = 0;
    OSSL_PARAM params[5];
    size_t n = 0;
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(ikm ? ikm : &empty), ikm_len);
    // RFC 5869: an absent salt is HashLen zero bytes; OpenSSL applies that when no salt is set.
    if (salt_len > 0) params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(info ? info : &empty), info_len);
    params[n] = OSSL_PARAM_construct_end();
    int ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(kctx);
    return ok;
}

int cce4_sha256(const uint8_t *data, size_t len, uint8_t out[32]) {
    unsigned int outl = 0;
    static const uint8_t empty = 0;
    return EVP_Digest(data ? data : &empty, len, out, &outl, EVP_sha256(), NULL) == 1 && outl == 32;
}

struct cce4_sha256_ctx { EVP_MD_CTX *md; };

cce4_sha256_ctx *cce4_sha256_new(void) {
    cce4_sha256_ctx *c = OPENSSL_zalloc(sizeof(*c));
    if (c == NULL) return NULL;
    c->md = EVP_MD_CTX_new();
    if (c->md == NULL || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
        cce4_sha256_free(c);
        return NULL;
    }
    return c;
}

int cce4_sha256_update(cce4_sha256_ctx *c, const uint8_t *data, size_t len) {
    if (len == 0) return 1;
    return EVP_DigestUpdate(c->md, data, len) == 1;
}

int cce4_sha256_final(cce4_sha256_ctx *c, uint8_t out[32]) {
    unsigned int outl = 0;
    return EVP_DigestFinal_ex(c->md, out, &outl) == 1 && outl == 32;
}

void cce4_sha256_free(cce4_sha256_ctx *c) {
    if (c == NULL) return;
    EVP_MD_CTX_free(c->md);
    OPENSSL_free(c);
}

int cce4_random_bytes(uint8_t *out, size_t len) {
    while (len > 0) {
        int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(out, n) != 1) return 0;
        out += n;
        len -= (size_t)n;
    }
    return 1;
}

void cce4_cleanse(void *p, size_t len) { if (p != NULL && len > 0) OPENSSL_cleanse(p, len); }

int cce4_ct_equal(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }

void cce4_last_error(char *buf, size_t buf_len) {
    if (buf == NULL || buf_len == 0) return;
    unsigned long e = ERR_get_error();
    if (e == 0) { snprintf(buf, buf_len, "no OpenSSL error queued"); }
    else { ERR_error_string_n(e, buf, buf_len); }
    ERR_clear_error();
}

// MARK: - secp256k1 (OpenSSL's EC_GROUP/EC_POINT/BIGNUM arithmetic)
//
// Why here and not EVP_PKEY_sign: OpenSSL 3.0 has no deterministic (RFC 6979) ECDSA
// and does not return the recovery id Ethereum signatures carry, so the signature is
// computed from the primitives with the caller's RFC 6979 nonce.

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>

static const EC_GROUP *secp256k1(void) {
    static EC_GROUP *group = NULL;
    EC_GROUP *g = __atomic_load_n(&group, __ATOMIC_ACQUIRE);
    if (g != NULL) return g;
    g = EC_GROUP_new_by_curve_name(NID_secp256k1);
    if (g == NULL) return NULL;
    EC_GROUP *expected = NULL;
    if (!__atomic_compare_exchange_n(&group, &expected, g, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        EC_GROUP_free(g);
        return expected;
    }
    return g;
}

static int point_to_bytes(const EC_GROUP *g, const EC_POINT *p, uint8_t pub[65], BN_CTX *ctx) {
    return EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, pub, 65, ctx) == 65;
}

/// A scalar in [1, n).
static int scalar_ok(const BIGNUM *x, const BIGNUM *n) {
    return !BN_is_zero(x) && !BN_is_negative(x) && BN_cmp(x, n) < 0;
}

int cce4_secp256k1_pubkey(const uint8_t priv[32], uint8_t pub[65]) {
    const EC_GROUP *g = secp256k1();
    if (g == NULL) return 0;
    int ok = 0;
    BN_CTX *ctx = BN_CTX_secure_new();
    BIGNUM *d = BN_secure_new();
    EC_POINT *q = EC_POINT_new(g);
    if (ctx == NULL || d == NULL || q == NULL) goto done;
    BN_set_flags(d, BN_FLG_CONSTTIME);
    if (BN_bin2bn(priv, 32, d) == NULL) goto done;
    if (!scalar_ok(d, EC_GROUP_get0_order(g))) goto done;
    if (!EC_POINT_mul(g, q, d, NULL, NULL, ctx)) goto done;
    ok = point_to_bytes(g, q, pub, ctx);
done:
    EC_POINT_free(q);
    BN_clear_free(d);
    BN_CTX_free(ctx);
    return ok;
}

/// ECDSA with an explicit nonce: 0 when k is unusable (0, >= n) or r or s came out 0.
static int sign_with_nonce(const uint8_t priv[32], const uint8_t hash[32], const uint8_t kbytes[32],
                           uint8_t sig[64], int *recid) {
    const EC_GROUP *g = secp256k1();
    if (g == NULL) return 0;
    const BIGNUM *n = EC_GROUP_get0_order(g);
    int ok = 0, id = 0;
    BN_CTX *ctx = BN_CTX_secure_new();
    BIGNUM *d = BN_secure_new(), *k = BN_secure_new(), *kinv = BN_secure_new();
    BIGNUM *e = BN_new(), *rx = BN_new(), *ry = BN_new(), *r = BN_new(), *s = BN_secure_new(), *half = BN_new();
    BIGNUM *nm2 = BN_new(), *t = BN_secure_new();
    EC_POINT *R = EC_POINT_new(g);
    if (!ctx || !d || !k || !kinv || !e || !rx || !ry || !r || !s || !half || !nm2 || !t || !R) goto done;
    BN_set_flags(d, BN_FLG_CONSTTIME);
    BN_set_flags(k, BN_FLG_CONSTTIME);
    if (!BN_bin2bn(priv, 32, d) || !BN_bin2bn(kbytes, 32, k) || !BN_bin2bn(hash, 32, e)) goto done;
    if (!scalar_ok(d, n) || !scalar_ok(k, n)) goto done;
    if (!EC_POINT_mul(g, R, k, NULL, NULL, ctx)) goto done;
    if (!EC_POINT_get_affine_coordinates(g, R, rx, ry, ctx)) goto done;
    id = (BN_is_odd(ry) ? 1 : 0) | (BN_cmp(rx, n) >= 0 ? 2 : 0);
    if (!BN_nnmod(r, rx, n, ctx) || BN_is_zero(r)) goto done;
    // s = k^-1 (e + r d) mod n; k^-1 through Fermat (constant time: n is prime).
    if (!BN_copy(nm2, n) || !BN_sub_word(nm2, 2)) goto done;
    if (!BN_mod_exp_mont_consttime(kinv, k, nm2, n, ctx, NULL)) goto done;
    if (!BN_mod_mul(t, r, d, n, ctx) || !BN_mod_add(t, t, e, n, ctx) || !BN_mod_mul(s, kinv, t, n, ctx)) goto done;
    if (BN_is_zero(s)) goto done;
    if (!BN_rshift1(half, n)) goto done;
    if (BN_cmp(s, half) > 0) {
        if (!BN_sub(s, n, s)) goto done;
        id ^= 1;
    }
    if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32) goto done;
    *recid = id;
    ok = 1;
done:
    EC_POINT_free(R);
    BN_clear_free(d); BN_clear_free(k); BN_clear_free(kinv); BN_clear_free(s); BN_clear_free(t); BN_free(nm2);
    BN_free(e); BN_free(rx); BN_free(ry); BN_free(r); BN_free(half);
    BN_CTX_free(ctx);
    return ok;
}

int cce4_secp256k1_recover(const uint8_t hash[32], const uint8_t sig[64], int recid, uint8_t pub[65]) {
    const EC_GROUP *g = secp256k1();
    if (g == NULL || recid < 0 || recid > 3) return 0;
    const BIGNUM *n = EC_GROUP_get0_order(g);
    int ok = 0;
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *r = BN_new(), *s = BN_new(), *e = BN_new(), *x = BN_new(), *p = BN_new();
    BIGNUM *rinv = BN_new(), *u1 = BN_new(), *u2 = BN_new();
    EC_POINT *R = EC_POINT_new(g), *Q = EC_POINT_new(g);
    if (!ctx || !r || !s || !e || !x || !p || !rinv || !u1 || !u2 || !R || !Q) goto done;
    if (!BN_bin2bn(sig, 32, r) || !BN_bin2bn(sig + 32, 32, s) || !BN_bin2bn(hash, 32, e)) goto done;
    if (!scalar_ok(r, n) || !scalar_ok(s, n)) goto done;
    if (!EC_GROUP_get_curve(g, p, NULL, NULL, ctx)) goto done;
    if (!BN_copy(x, r)) goto done;
    if (recid & 2) { if (!BN_add(x, x, n)) goto done; }
    if (BN_cmp(x, p) >= 0) goto done;
    if (!EC_POINT_set_compressed_coordinates(g, R, x, recid & 1, ctx)) goto done;
    // Q = r^-1 (s R - e G) = (-e r^-1) G + (s r^-1) R
    if (!BN_mod_inverse(rinv, r, n, ctx)) goto done;
    if (!BN_nnmod(e, e, n, ctx)) goto done;
    if (!BN_mod_mul(u1, e, rinv, n, ctx) || !BN_mod_sub(u1, n, u1, n, ctx)) goto done;
    if (!BN_mod_mul(u2, s, rinv, n, ctx)) goto done;
    if (!EC_POINT_mul(g, Q, u1, R, u2, ctx)) goto done;
    if (EC_POINT_is_at_infinity(g, Q)) goto done;
    ok = point_to_bytes(g, Q, pub, ctx);
done:
    if (!ok) ERR_clear_error(); // a refused signature is an answer, not an error to report later
    EC_POINT_free(R); EC_POINT_free(Q);
    BN_free(r); BN_free(s); BN_free(e); BN_free(x); BN_free(p); BN_free(rinv); BN_free(u1); BN_free(u2);
    BN_CTX_free(ctx);
    return ok;
}

/// out = HMAC-SHA256(key, data); `out` may alias `key` or `data`.
static int hmac32(const uint8_t key[32], const uint8_t *data, size_t len, uint8_t out[32]) {
    uint8_t tmp[32];
    unsigned int n = 0;
    int ok = HMAC(EVP_sha256(), key, 32, data, len, tmp, &n) != NULL && n == 32;
    memcpy(out, tmp, 32);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return ok;
}

int cce4_secp256k1_sign(const uint8_t priv[32], const uint8_t hash[32], uint8_t sig[64], int *recid) {
    const EC_GROUP *g = secp256k1();
    if (g == NULL) return 0;
    // RFC 6979 §3.2 with HMAC-SHA256; qlen = hlen = 256, so bits2octets(h) = h mod n.
    uint8_t K[32], V[32], h[32], buf[32 + 1 + 32 + 32];
    int ok = 0;
    BIGNUM *e = BN_bin2bn(hash, 32, NULL);
    BN_CTX *ctx = BN_CTX_new();
    if (e == NULL || ctx == NULL || !BN_nnmod(e, e, EC_GROUP_get0_order(g), ctx) || BN_bn2binpad(e, h, 32) != 32) goto done;
    memset(K, 0, 32);
    memset(V, 1, 32);
    for (int step = 0; step < 2; step++) {      // steps d-g: K = HMAC_K(V || step || x || h); V = HMAC_K(V)
        memcpy(buf, V, 32); buf[32] = (uint8_t)step; memcpy(buf + 33, priv, 32); memcpy(buf + 65, h, 32);
        if (!hmac32(K, buf, sizeof(buf), K) || !hmac32(K, V, 32, V)) goto done;
    }
    for (int tries = 0; tries < 1000 && !ok; tries++) {  // step h: a usable k is all but certain at once
        if (!hmac32(K, V, 32, V)) goto done;
        if (sign_with_nonce(priv, hash, V, sig, recid)) { ok = 1; break; }
        ERR_clear_error();
        memcpy(buf, V, 32); buf[32] = 0;
        if (!hmac32(K, buf, 33, K) || !hmac32(K, V, 32, V)) goto done;
    }
done:
    OPENSSL_cleanse(K, sizeof(K)); OPENSSL_cleanse(V, sizeof(V)); OPENSSL_cleanse(buf, sizeof(buf));
    BN_free(e);
    BN_CTX_free(ctx);
    return ok;
}

int cce4_scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                uint64_t n, uint64_t r, uint64_t p, uint64_t maxmem, uint8_t *out, size_t out_len) {
    static const uint8_t empty = 0;
    return EVP_PBE_scrypt((const char *)(pass ? pass : &empty), pass_len, salt ? salt : &empty, salt_len,
                          n, r, p, maxmem, out, out_len);
}

int cce4_pbkdf2_sha256(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                       uint32_t iterations, uint8_t *out, size_t out_len) {
    static const uint8_t empty = 0;
    if (pass_len > INT_MAX || salt_len > INT_MAX || out_len > INT_MAX || iterations == 0 || iterations > INT_MAX) return 0;
    return PKCS5_PBKDF2_HMAC((const char *)(pass ? pass : &empty), (int)pass_len, salt ? salt : &empty, (int)salt_len,
                             (int)iterations, EVP_sha256(), (int)out_len, out);
}

int cce4_aes128_ctr(const uint8_t key[16], const uint8_t iv[16], const uint8_t *in, size_t len, uint8_t *out) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) return 0;
    int ok = EVP_EncryptInit_ex(ctx, EVP_aes_128_ctr(), NULL, key, iv);
    size_t done = 0;
    while (ok && done < len) {
        int chunk = (len - done) > (1 << 30) ? (1 << 30) : (int)(len - done);
        int n = 0;
        ok = EVP_EncryptUpdate(ctx, out + done, &n, in + done, chunk) && n == chunk;
        done += (size_t)chunk;
    }
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

// ---- Attestation ----

struct cce4_x509 { X509 *x; };
struct cce4_crl { X509_CRL *c; };

cce4_x509 *cce4_x509_from_der(const uint8_t *der, size_t len) {
    if (der == NULL || len == 0 || !fits_int(len)) return NULL;
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL) { ERR_clear_error(); return NULL; }
    if (p != der + len) { X509_free(x); return NULL; }  // trailing bytes: not one certificate
    cce4_x509 *c = OPENSSL_zalloc(sizeof(*c));
    if (c == NULL) { X509_free(x); return NULL; }
    c->x = x;
    return c;
}

void cce4_x509_free(cce4_x509 *c) {
    if (c == NULL) return;
    X509_free(c->x);
    OPENSSL_free(c);
}

int cce4_x509_extension(const cce4_x509 *c, const char *oid, uint8_t *out, size_t cap, size_t *len) {
    if (c == NULL || oid == NULL || len == NULL) return -1;
    ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
    if (obj == NULL) { ERR_clear_error(); return -1; }
    int idx = X509_get_ext_by_OBJ(c->x, obj, -1);
    ASN1_OBJECT_free(obj);
    if (idx < 0) return 0;
    X509_EXTENSION *ext = X509_get_ext(c->x, idx);
    ASN1_OCTET_STRING *data = ext == NULL ? NULL : X509_EXTENSION_get_data(ext);
    if (data == NULL) return -1;
    size_t n = (size_t)ASN1_STRING_length(data);
    *len = n;
    if (out != NULL && cap > 0) memcpy(out, ASN1_STRING_get0_data(data), n < cap ? n : cap);
    return 1;
}

int cce4_x509_common_name(const cce4_x509 *c, int issuer, char *buf, size_t buf_len) {
    if (c == NULL || buf == NULL || buf_len == 0 || !fits_int(buf_len)) return -1;
    const X509_NAME *name = issuer ? X509_get_issuer_name(c->x) : X509_get_subject_name(c->x);
    int n = X509_NAME_get_text_by_NID((X509_NAME *)name, NID_commonName, buf, (int)buf_len);
    ERR_clear_error();
    return n < 0 || (size_t)n >= buf_len ? -1 : n;
}

// DER ECDSA-Sig-Value from raw big-endian r and s.
static int ecdsa_der(const uint8_t *r, const uint8_t *s, size_t n, unsigned char **der, int *der_len) {
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *br = BN_bin2bn(r, (int)n, NULL), *bs = BN_bin2bn(s, (int)n, NULL);
    if (sig == NULL || br == NULL || bs == NULL || ECDSA_SIG_set0(sig, br, bs) != 1) {
        ECDSA_SIG_free(sig); BN_free(br); BN_free(bs);
        return 0;
    }
    *der = NULL;
    *der_len = i2d_ECDSA_SIG(sig, der);
    ECDSA_SIG_free(sig);
    return *der_len > 0;
}

static int verify_with(EVP_PKEY *pkey, int hash_bits, const uint8_t *msg, size_t msg_len,
                       const uint8_t *r, const uint8_t *s, size_t n) {
    if (pkey == NULL || !EVP_PKEY_is_a(pkey, "EC") || n == 0 || n > 72) return -1;
    const EVP_MD *md = hash_bits == 256 ? EVP_sha256() : hash_bits == 384 ? EVP_sha384() : NULL;
    if (md == NULL) return -1;
    unsigned char *der = NULL;
    int der_len = 0;
    if (!ecdsa_der(r, s, n, &der, &der_len)) { ERR_clear_error(); return -1; }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = -1;
    if (ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1) {
        rc = EVP_DigestVerify(ctx, der, (size_t)der_len, msg, msg_len) == 1 ? 1 : 0;
    }
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return rc;
}

int cce4_x509_ecdsa_verify(const cce4_x509 *c, int hash_bits, const uint8_t *msg, size_t msg_len,
                           const uint8_t *r, const uint8_t *s, size_t n) {
    if (c == NULL) return -1;
    return verify_with(X509_get0_pubkey(c->x), hash_bits, msg, msg_len, r, s, n);
}

// An EC key from a raw point (and optionally a private scalar) via EVP_PKEY_fromdata.
static EVP_PKEY *ec_key(const char *group, const uint8_t *point, size_t point_len, const uint8_t *priv, size_t priv_len) {
    unsigned char pub[1 + 96];
    if (point_len > 96) return NULL;
    pub[0] = 0x04;
    memcpy(pub + 1, point, point_len);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *d = priv == NULL ? NULL : BN_bin2bn(priv, (int)priv_len, NULL);
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    int sel = priv == NULL ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEYPAIR;
    if (bld != NULL && ctx != NULL && (priv == NULL || d != NULL) &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, point_len + 1) == 1 &&
        (d == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) == 1) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
        EVP_PKEY_fromdata_init(ctx) == 1) {
        if (EVP_PKEY_fromdata(ctx, &pkey, sel, params) != 1) pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    ERR_clear_error();
    return pkey;
}

int cce4_ecdsa_verify_raw(const uint8_t *point, size_t point_len, int hash_bits,
                          const uint8_t *msg, size_t msg_len,
                          const uint8_t *r, const uint8_t *s, size_t n) {
    const char *group = point_len == 64 ? "P-256" : point_len == 96 ? "P-384" : NULL;
    if (group == NULL || point == NULL) return -1;
    EVP_PKEY *pkey = ec_key(group, point, point_len, NULL, 0);
    if (pkey == NULL) return 0;  // not a point on the curve: the key is bad, so is the signature
    int rc = verify_with(pkey, hash_bits, msg, msg_len, r, s, n);
    EVP_PKEY_free(pkey);
    return rc;
}

int cce4_p256_generate(uint8_t priv[32], uint8_t point[64]) {
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (pkey == NULL) return 0;
    BIGNUM *d = NULL;
    unsigned char pub[65];
    size_t pub_len = 0;
    int ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1 &&
             BN_bn2binpad(d, priv, 32) == 32 &&
             EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &pub_len) == 1 &&
             pub_len == 65 && pub[0] == 0x04;
    if (ok) memcpy(point, pub + 1, 64);
    BN_clear_free(d);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return ok;
}

int cce4_p256_sign(const uint8_t priv[32], const uint8_t *msg, size_t msg_len, uint8_t rs[64]) {
    // The public point is recomputed by OpenSSL from the scalar when absent; we pass none.
    BIGNUM *d = BN_bin2bn(priv, 32, NULL);
    EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    EC_POINT *q = g == NULL ? NULL : EC_POINT_new(g);
    unsigned char pub[65];
    int ok = 0;
    EVP_PKEY *pkey = NULL;
    if (d != NULL && q != NULL && EC_POINT_mul(g, q, d, NULL, NULL, NULL) == 1 &&
        EC_POINT_point2oct(g, q, POINT_CONVERSION_UNCOMPRESSED, pub, sizeof(pub), NULL) == 65) {
        pkey = ec_key("P-256", pub + 1, 64, priv, 32);
    }
    EC_POINT_free(q);
    EC_GROUP_free(g);
    BN_clear_free(d);
    if (pkey == NULL) { ERR_clear_error(); return 0; }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[80];
    size_t der_len = sizeof(der);
    if (ctx != NULL && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
        EVP_DigestSign(ctx, der, &der_len, msg, msg_len) == 1) {
        const unsigned char *p = der;
        ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
        if (sig != NULL) {
            const BIGNUM *r = NULL, *s = NULL;
            ECDSA_SIG_get0(sig, &r, &s);
            ok = BN_bn2binpad(r, rs, 32) == 32 && BN_bn2binpad(s, rs + 32, 32) == 32;
            ECDSA_SIG_free(sig);
        }
    }
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return ok;
}

cce4_crl *cce4_crl_from_der(const uint8_t *der, size_t len) {
    if (der == NULL || len == 0 || !fits_int(len)) return NULL;
    const unsigned char *p = der;
    X509_CRL *x = d2i_X509_CRL(NULL, &p, (long)len);
    if (x == NULL) { ERR_clear_error(); return NULL; }
    if (p != der + len) { X509_CRL_free(x); return NULL; }
    cce4_crl *c = OPENSSL_zalloc(sizeof(*c));
    if (c == NULL) { X509_CRL_free(x); return NULL; }
    c->c = x;
    return c;
}

void cce4_crl_free(cce4_crl *c) {
    if (c == NULL) return;
    X509_CRL_free(c->c);
    OPENSSL_free(c);
}

int cce4_x509_verify_chain(const cce4_x509 *leaf,
                           const cce4_x509 *const *untrusted, size_t n_untrusted,
                           const cce4_x509 *root,
                           const cce4_crl *const *crls, size_t n_crls, int crl_mode,
                           int64_t at, int *error) {
    if (leaf == NULL || root == NULL || error == NULL) return -1;
    *error = 0;
    int rc = -1;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *chain = sk_X509_new_null();
    STACK_OF(X509_CRL) *crl_stack = sk_X509_CRL_new_null();
    if (store == NULL || ctx == NULL || chain == NULL || crl_stack == NULL) goto done;
    if (X509_STORE_add_cert(store, root->x) != 1) goto done;  // the one trust anchor
    for (size_t i = 0; i < n_untrusted; i++) {
        if (untrusted[i] == NULL || sk_X509_push(chain, untrusted[i]->x) <= 0) goto done;
    }
    for (size_t i = 0; i < n_crls; i++) {
        if (crls[i] == NULL || sk_X509_CRL_push(crl_stack, crls[i]->c) <= 0) goto done;
    }
    if (X509_STORE_CTX_init(ctx, store, leaf->x, chain) != 1) goto done;
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, (time_t)at);  // sets X509_V_FLAG_USE_CHECK_TIME
    X509_STORE_CTX_set0_crls(ctx, crl_stack);
    if (crl_mode == 1) X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK);
    if (crl_mode == 2) X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    if (X509_verify_cert(ctx) == 1) {
        rc = 1;
    } else {
        *error = X509_STORE_CTX_get_error(ctx);
        rc = *error == 0 ? -1 : 0;
    }
done:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_free(chain);          // the certificates stay owned by their cce4_x509
    sk_X509_CRL_free(crl_stack);  // likewise the CRLs
    ERR_clear_error();
    return rc;
}

void cce4_x509_error_string(int error, char *buf, size_t buf_len) {
    if (buf == NULL || buf_len == 0) return;
    snprintf(buf, buf_len, "%s", X509_verify_cert_error_string(error));
}

// MARK: - Key release

int cce4_x25519_generate(uint8_t priv[32], uint8_t pub[32]) {
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    if (pkey == NULL) return 0;
    size_t pl = 32, ql = 32;
    int ok = EVP_PKEY_get_raw_private_key(pkey, priv, &pl) == 1 && pl == 32 &&
             EVP_PKEY_get_raw_public_key(pkey, pub, &ql) == 1 && ql == 32;
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return ok;
}

int cce4_x25519_derive(const uint8_t priv[32], const uint8_t peer[32], uint8_t shared[32]) {
    EVP_PKEY *mine = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
    EVP_PKEY *theirs = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    EVP_PKEY_CTX *ctx = mine == NULL ? NULL : EVP_PKEY_CTX_new(mine, NULL);
    size_t len = 32;
    int ok = ctx != NULL && theirs != NULL &&
             EVP_PKEY_derive_init(ctx) == 1 &&
             EVP_PKEY_derive_set_peer(ctx, theirs) == 1 &&
             EVP_PKEY_derive(ctx, shared, &len) == 1 && len == 32;
    if (ok) {
        // Belt and braces: OpenSSL refuses an all-zero result, and so do we (RFC 7748 §6.1).
        uint8_t acc = 0;
        for (int i = 0; i < 32; i++) acc |= shared[i];
        if (acc == 0) ok = 0;
    }
    if (!ok) OPENSSL_cleanse(shared, 32);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(mine);
    EVP_PKEY_free(theirs);
    ERR_clear_error();
    return ok;
}

int cce4_sha512(const uint8_t *data, size_t len, uint8_t out[64]) {
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha512(), NULL) == 1 && n == 64;
}

int cce4_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t out[32]) {
    size_t n = 0;
    static const uint8_t empty = 0;
    unsigned char *r = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key_len ? key : &empty, key_len,
                                 len ? data : &empty, len, out, 32, &n);
    return r != NULL && n == 32;
}
