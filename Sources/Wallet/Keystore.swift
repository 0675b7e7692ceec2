// Ethereum keystore v3 (the "Web3 Secret Storage" JSON that geth, eth-account and wallets
// import): scrypt or PBKDF2-HMAC-SHA256 → 32-byte derived key; AES-128-CTR under its first
// half encrypts the private key; MAC = Keccak-256(second half || ciphertext).
import Envelope
import Foundation
internal import COpenSSL

public enum Keystore {
    /// KDF parameters for writing. `standard` is geth's and eth-account's default
    /// (scrypt n = 2^18, r = 8, p = 1: about 256 MiB and a second or so); `light` is for
    /// tests and throwaway keys.
    public enum KDF: Sendable {
        case scrypt(n: UInt64, r: UInt64, p: UInt64)
        case pbkdf2(iterations: UInt32)
        public static let standard = KDF.scrypt(n: 1 << 18, r: 8, p: 1)
        public static let light = KDF.scrypt(n: 1 << 12, r: 8, p: 1)
    }

    /// Upper bounds on what a file may ask of us: a hostile keystore must not make us
    /// allocate gigabytes or spin for minutes.
    static let maxScryptN: UInt64 = 1 << 20, maxScryptR: UInt64 = 32, maxScryptP: UInt64 = 16
    static let maxPBKDF2Iterations: UInt32 = 10_000_000
    static let scryptMaxMem: UInt64 = 1 << 31
    /// Together, not just one by one: scrypt needs 128·n·r bytes and n·r·p units of work
    /// (the standard parameters need 256 MiB and 2^21).
    static let scryptMaxBlockMemory: UInt64 = 512 << 20, scryptMaxWork: UInt64 = 1 << 23

    /// Encrypts `key` under `password` into keystore v3 JSON (keys sorted, one line).
    public static func encrypt(_ key: PrivateKey, password: [UInt8], kdf: KDF = .standard) throws(WalletError) -> Data {
        let salt: [UInt8], iv: [UInt8], uuid: [UInt8]
        do { salt = try Random.bytes(32); iv = try Random.bytes(16); uuid = try Random.bytes(16) } catch { throw .crypto("\(error)") }
        let params: [String: Any]
        let name: String
        switch kdf {
        case .scrypt(let n, let r, let p):
            name = "scrypt"; params = ["dklen": 32, "n": n, "r": r, "p": p, "salt": Hex.encode(salt)]
        case .pbkdf2(let c):
            name = "pbkdf2"; params = ["dklen": 32, "c": c, "prf": "hmac-sha256", "salt": Hex.encode(salt)]
        }
        let derived = try derive(kdf: kdf, password: password, salt: salt)
        var ciphertext = [UInt8](repeating: 0, count: 32)
        let ok = derived.withUnsafeBytes { dk in
            key.withUnsafeBytes { k in
                cce4_aes128_ctr(dk.baseAddress!.assumingMemoryBound(to: UInt8.self), iv, k.baseAddress!.assumingMemoryBound(to: UInt8.self), 32, &ciphertext)
            }
        }
        guard ok == 1 else { throw .crypto("AES-128-CTR failed") }
        let mac = derived.withUnsafeBytes { dk in Keccak256.hash(Array(dk[16..<32]) + ciphertext) }
        var u = uuid
        u[6] = u[6] & 0x0f | 0x40; u[8] = u[8] & 0x3f | 0x80
        let h = Hex.encode(u)
        let id = [h.prefix(8), h.dropFirst(8).prefix(4), h.dropFirst(12).prefix(4), h.dropFirst(16).prefix(4), h.dropFirst(20)].joined(separator: "-")
        let json: [String: Any] = [
            "address": Hex.encode(key.address.bytes),
            "crypto": [
                "cipher": "aes-128-ctr", "cipherparams": ["iv": Hex.encode(iv)], "ciphertext": Hex.encode(ciphertext),
                "kdf": name, "kdfparams": params, "mac": Hex.encode(mac),
            ] as [String: Any],
            "id": id, "version": 3,
        ]
        do { return try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]) } catch { throw .crypto("\(error)") }
    }

    /// The address a keystore names, without the password (nil if it names none).
    public static func address(of data: Data) throws(WalletError) -> Address? {
        let top = try object(data)
        guard let a = top["address"] as? String else { return nil }
        do { return try Address(a.hasPrefix("0x") ? a : "0x" + a) } catch { throw .keystore("its address field is not an address") }
    }

    /// Decrypts a keystore v3 file. Wrong password → `.wrongPassword`; anything malformed →
    /// `.keystore(reason)`. The key must match the file's address when it names one.
    public static func decrypt(_ data: Data, password: [UInt8]) throws(WalletError) -> PrivateKey {
        let top = try object(data)
        guard let version = top["version"] as? Int, version == 3 else { throw .keystore("version must be 3") }
        guard let crypto = (top["crypto"] ?? top["Crypto"]) as? [String: Any] else { throw .keystore("no crypto section") }
        guard crypto["cipher"] as? String == "aes-128-ctr" else { throw .keystore("cipher must be aes-128-ctr") }
        guard let ivHex = (crypto["cipherparams"] as? [String: Any])?["iv"] as? String, let iv = Hex.decode(ivHex), iv.count == 16 else {
            throw .keystore("cipherparams.iv must be 16 bytes of hex")
        }
        guard let ctHex = crypto["ciphertext"] as? String, let ciphertext = Hex.decode(ctHex), ciphertext.count == 32 else {
            throw .keystore("ciphertext must be 32 bytes of hex")
        }
        guard let macHex = crypto["mac"] as? String, let mac = Hex.decode(macHex), mac.count == 32 else { throw .keystore("mac must be 32 bytes of hex") }
        guard let p = crypto["kdfparams"] as? [String: Any] else { throw .keystore("no kdfparams") }
        guard let saltHex = p["salt"] as? String, let salt = Hex.decode(saltHex), salt.count <= 1024 else { throw .keystore("kdfparams.salt must be hex") }
        guard (p["dklen"] as? Int) == 32 else { throw .keystore("kdfparams.dklen must be 32") }
        let kdf: KDF
        switch crypto["kdf"] as? String {
        case "scrypt":
            guard let n = p["n"] as? UInt64, let r = p["r"] as? UInt64, let pp = p["p"] as? UInt64,
                  n > 1, n & (n - 1) == 0, n <= maxScryptN, r >= 1, r <= maxScryptR, pp >= 1, pp <= maxScryptP,
                  128 * n * r <= scryptMaxBlockMemory, n * r * pp <= scryptMaxWork else {
                throw .keystore("scrypt parameters out of range (n a power of two ≤ 2^20, r ≤ 32, p ≤ 16, 128·n·r ≤ 512 MiB, n·r·p ≤ 2^23)")
            }
            kdf = .scrypt(n: n, r: r, p: pp)
        case "pbkdf2":
            guard p["prf"] as? String == "hmac-sha256", let c = p["c"] as? UInt32, c >= 1, c <= maxPBKDF2Iterations else {
                throw .keystore("pbkdf2 needs prf hmac-sha256 and 1 ≤ c ≤ 10,000,000")
            }
            kdf = .pbkdf2(iterations: c)
        default:
            throw .keystore("kdf must be scrypt or pbkdf2")
        }
        let derived = try derive(kdf: kdf, password: password, salt: salt)
        let expected = derived.withUnsafeBytes { dk in Keccak256.hash(Array(dk[16..<32]) + ciphertext) }
        guard cce4_ct_equal(expected, mac, 32) == 1 else { throw .wrongPassword }
        let key: PrivateKey
        do {
            let plain = try SecureBytes(count: 32) { out in
                let ok = derived.withUnsafeBytes { dk in
                    cce4_aes128_ctr(dk.baseAddress!.assumingMemoryBound(to: UInt8.self), iv, ciphertext, 32, out.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
                guard ok == 1 else { throw WalletError.crypto("AES-128-CTR failed") }
            }
            key = try plain.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws(WalletError) -> PrivateKey in try PrivateKey(bytes: b) }
        } catch let e as WalletError { throw e } catch { throw .crypto("\(error)") }
        if let named = try address(of: data), named != key.address {
            throw .keystore("the key inside is for \(key.address), but the file says \(named)")
        }
        return key
    }

    static func object(_ data: Data) throws(WalletError) -> [String: Any] {
        guard data.count <= 64 * 1024 else { throw .keystore("larger than 64 KiB") }
        guard let o = try? JSONSerialization.jsonObject(with: data), let top = o as? [String: Any] else { throw .keystore("not a JSON object") }
        return top
    }

    static func derive(kdf: KDF, password: [UInt8], salt: [UInt8]) throws(WalletError) -> SecureBytes {
        do {
            return try SecureBytes(count: 32) { out in
                let o = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
                let ok: Int32
                switch kdf {
                case .scrypt(let n, let r, let p):
                    ok = cce4_scrypt(password, password.count, salt, salt.count, n, r, p, scryptMaxMem, o, 32)
                case .pbkdf2(let c):
                    ok = cce4_pbkdf2_sha256(password, password.count, salt, salt.count, c, o, 32)
                }
                guard ok == 1 else { throw WalletError.crypto("the keystore's key derivation failed (parameters too large for memory?)") }
            }
        } catch let e as WalletError { throw e } catch { throw .crypto("\(error)") }
    }
}
