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
