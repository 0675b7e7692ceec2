// Wallet: Keccak-256, EIP-55, secp256k1 signatures, EIP-191, EIP-4361 and keystore v3,
// checked against published vectors and the Python eth-account package.
import Envelope
import Foundation
import TestSupport
import Testing
@testable import Wallet

/// Runs Tests/interop/eth_tool.py (eth-account) with a JSON request.
func eth(_ command: String, _ request: Any) throws -> Any {
    let input = try JSONSerialization.data(withJSONObject: request)
    let r = try run(Repo.python, [Repo.root + "/Tests/interop/eth_tool.py", command], input: input)
    guard r.status == 0 else { throw TestFailure("eth_tool \(command) failed: \(r.stderr)") }
    return try JSONSerialization.jsonObject(with: r.stdout)
}

let siweData = Repo.shared + "/testdata/siwe/"

func loadJSON(_ path: String) throws -> [String: [String: Any]] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: [String: Any]]
}

@Suite struct KeccakAndAddressTests {
    @Test func publishedKeccakVectors() {
        #expect(Hex.encode(Keccak256.hash([])) == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
        #expect(Hex.encode(Keccak256.hash(Array("abc".utf8))) == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45")
        // Not SHA3-256 ("abc" → 3a985da7…): the padding is Keccak's 0x01.
        #expect(Hex.encode(Keccak256.hash(Array("abc".utf8))) != "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532")
    }

    @Test func keccakAgreesWithEthHashAcrossBlockBoundaries() throws {
        var g = SeededGenerator(seed: 55)
        let inputs = (0..<300).map { n in g.bytes(n < 280 ? n : Int(g.next() % 5000)) }
        let theirs = try eth("keccak", ["items": inputs.map(Hex.encode)]) as! [String]
        for (i, input) in inputs.enumerated() {
            #expect(Hex.encode(Keccak256.hash(input)) == theirs[i], "length \(input.count)")
        }
    }

    @Test func eip55Vectors() throws {
        let checksummed = ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
                           "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"]
        for a in checksummed {
            #expect(try Address(a, requireChecksum: true).checksummed == a)
            #expect(try Address(a.lowercased()).checksummed == a)
        }
        // All-caps and all-lowercase forms carry no checksum: accepted unless one is required.
        #expect(throws: Never.self) { try Address("0x52908400098527886E0F7030069857D2E4169EE7") }
        #expect(throws: WalletError.self) { try Address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", requireChecksum: true) }
        // EIP-55's own "all lower" vectors: their checksummed form happens to be all lowercase.
        #expect(try Address("0xde709f2102306220921060314715629080e2fb77", requireChecksum: true).checksummed == "0xde709f2102306220921060314715629080e2fb77")
        // One letter's case flipped: refused.
        #expect(throws: WalletError.badChecksum("0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")) {
            try Address("0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
        }
        for bad in ["", "0x", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
                    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd", "0xZaAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"] {
            #expect(throws: WalletError.self) { try Address(bad) }
        }
        var g = SeededGenerator(seed: 3)
        let raw = (0..<200).map { _ in g.bytes(20) }
        let theirs = try eth("checksum", ["items": raw.map(Hex.encode)]) as! [String]
        for (i, r) in raw.enumerated() { #expect(Address(bytes: r).checksummed == theirs[i]) }
    }
}

@Suite struct SignatureTests {
    /// The well-known test key 0x4c0883a6… (web3.js docs) and its address.
    @Test func knownKey() throws {
        let key = try PrivateKey(bytes: Hex.decode("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")!)
        #expect(key.address.checksummed == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23")
    }

    @Test func invalidKeysRefused() {
        #expect(throws: WalletError.invalidPrivateKey) { try PrivateKey(bytes: [UInt8](repeating: 0, count: 32)) }
        #expect(throws: WalletError.invalidPrivateKey) { try PrivateKey(bytes: curveOrder) }
        #expect(throws: WalletError.invalidPrivateKey) { try PrivateKey(bytes: [UInt8](repeating: 0xff, count: 32)) }
        #expect(throws: WalletError.invalidPrivateKey) { try PrivateKey(bytes: [1, 2, 3]) }
    }

    /// A few hundred random keys and messages: eth-account's signatures equal ours byte for
    /// byte (both RFC 6979), and each side recovers the other's signer.
    @Test func agreesWithEthAccountBothWays() throws {
        var g = SeededGenerator(seed: 191)
        var keys = [[UInt8]](), messages = [[UInt8]]()
        for i in 0..<300 {
            var k = g.bytes(32); k[0] &= 0x7f // below n
            keys.append(k)
            messages.append(g.bytes(i % 3 == 0 ? 0 : Int(g.next() % 300)))
        }
        let theirs = try eth("sign", ["items": zip(keys, messages).map { ["key": Hex.encode($0), "message": Hex.encode($1)] }]) as! [[String: String]]
        var ours = [Signature]()
        for i in keys.indices {
            let key = try PrivateKey(bytes: keys[i])
            #expect(key.address.checksummed == theirs[i]["address"])
            let sig = try key.signPersonal(messages[i])
            ours.append(sig)
            #expect(Hex.encode(sig.bytes) == theirs[i]["signature"], "signature \(i)")
            let recovered = try PersonalMessage.signer(of: messages[i], signature: Signature(hex: theirs[i]["signature"]!))
            #expect(recovered == key.address)
        }
        // Fresh random keys the other way: eth-account recovers our signers.
        var fresh = [Address](), items = [[String: String]]()
        for i in 0..<100 {
            let key = try PrivateKey.generate()
            fresh.append(key.address)
            items.append(["message": Hex.encode(messages[i]), "signature": Hex.encode(try key.signPersonal(messages[i]).bytes)])
        }
        let recovered = try eth("recover", ["items": items]) as! [String]
        #expect(recovered == fresh.map(\.checksummed))
    }

    @Test func highSAndMalformedSignaturesRefused() throws {
        let key = try PrivateKey.generate()
        let msg = Array("hello".utf8)
        let sig = try key.signPersonal(msg)
        #expect(compareBE(sig.s, halfOrder) <= 0)
        // The malleable twin (n - s, flipped v) recovers the same key but is refused.
        let twin = Signature(r: sig.r, s: subtractBE(curveOrder, sig.s), recoveryID: sig.recoveryID ^ 1)
        #expect(throws: WalletError.highS) { try PersonalMessage.signer(of: msg, signature: twin) }
        #expect(try twin.recover(hash: PersonalMessage.hash(msg), allowHighS: true).address == key.address)
        #expect(throws: WalletError.self) { try Signature(bytes: Array(sig.bytes.prefix(64))) }
        #expect(throws: WalletError.self) { try Signature(bytes: Array(sig.bytes.prefix(64)) + [29]) }
        let zero = Signature(r: [UInt8](repeating: 0, count: 32), s: sig.s, recoveryID: 0)
        #expect(throws: WalletError.self) { try zero.recover(hash: PersonalMessage.hash(msg)) }
        let big = Signature(r: curveOrder, s: sig.s, recoveryID: 0)
        #expect(throws: WalletError.self) { try big.recover(hash: PersonalMessage.hash(msg)) }
        // Another message: recovers someone else.
        #expect(try PersonalMessage.signer(of: Array("hellp".utf8), signature: sig) != key.address)
    }

    @Test func randomSignatureBytesNeverCrash() {
        var g = SeededGenerator(seed: 9)
        for _ in 0..<2000 {
            let b = g.bytes(65)
            _ = try? PersonalMessage.signer(of: [1, 2, 3], signature: Signature(bytes: b))
        }
    }
}

@Suite struct SIWETests {
    static func fields(_ f: [String: Any]) throws -> SIWEMessage {
        func time(_ k: String) throws -> SIWETime? { try (f[k] as? String).map { try SIWETime($0) } }
        return SIWEMessage(
            scheme: f["scheme"] as? String, domain: f["domain"] as! String, address: try Address(f["address"] as! String),
            statement: f["statement"] as? String, uri: f["uri"] as! String, version: f["version"] as! String,
            chainID: UInt64(f["chainId"] as! Int), nonce: f["nonce"] as! String, issuedAt: try SIWETime(f["issuedAt"] as! String),
            expirationTime: try time("expirationTime"), notBefore: try time("notBefore"),
            requestID: f["requestId"] as? String, resources: f["resources"] as? [String] ?? [])
    }

    @Test func referenceParsingVectors() throws {
        let positive = try loadJSON(siweData + "parsing_positive.json")
        #expect(positive.count >= 19)
        for (name, v) in positive {
            let text = v["message"] as! String
            let m = try SIWEMessage(parsing: text)
            let f = v["fields"] as! [String: Any]
            #expect(m.domain == f["domain"] as! String, "\(name)")
            #expect(m.scheme == f["scheme"] as? String, "\(name)")
            #expect(m.address.checksummed == f["address"] as! String, "\(name)")
            #expect(m.statement == f["statement"] as? String, "\(name)")
            #expect(m.uri == f["uri"] as! String, "\(name)")
            #expect(m.chainID == UInt64(f["chainId"] as! Int), "\(name)")
            #expect(m.nonce == f["nonce"] as! String, "\(name)")
            #expect(m.issuedAt.text == f["issuedAt"] as! String, "\(name)")
            #expect(m.expirationTime?.text == f["expirationTime"] as? String, "\(name)")
            #expect(m.notBefore?.text == f["notBefore"] as? String, "\(name)")
            #expect(m.requestID == f["requestId"] as? String, "\(name)")
            #expect(m.resources == (f["resources"] as? [String] ?? []), "\(name)")
            #expect(m.text == text, "\(name): renders back to the same text")
        }
        let negative = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: siweData + "parsing_negative.json"))) as! [String: String]
        #expect(negative.count >= 29)
        for (name, text) in negative {
            #expect(throws: SIWEError.self, "\(name)") { try SIWEMessage(parsing: text) }
        }
    }

    static func check(_ v: [String: Any]) throws {
        let m = try SIWEMessage(parsing: try fields(v).text)
        let time = try (v["time"] as? String).map { try SIWETime($0).nanoseconds } ?? Int64(Date().timeIntervalSince1970 * 1e9)
        try m.verify(signature: try Signature(hex: v["signature"] as! String), at: time,
                     domain: v["domainBinding"] as? String, nonce: v["matchNonce"] as? String)
    }

    @Test func referenceVerificationVectors() throws {
        let positive = try loadJSON(siweData + "verification_positive.json")
        #expect(positive.count >= 4)
        for (name, v) in positive {
            #expect(throws: Never.self, "\(name)") { try Self.check(v) }
        }
        let negative = try loadJSON(siweData + "verification_negative.json")
        #expect(negative.count >= 10)
        for (name, v) in negative {
            #expect(throws: (any Error).self, "\(name)") { try Self.check(v) }
        }
    }

    @Test func verificationReasonsAndBoundaries() throws {
        let key = try PrivateKey.generate()
        let exp = try SIWETime("2030-01-01T00:00:00Z"), nbf = try SIWETime("2029-01-01T00:00:00.5Z")
        let m = SIWEMessage(domain: "plane.cce4long.test", address: key.address, statement: "Sign in to cce4long.",
                            uri: "https://plane.cce4long.test/login", chainID: 1, nonce: "abcdefgh1234",
                            issuedAt: try SIWETime("2028-06-01T12:00:00Z"), expirationTime: exp, notBefore: nbf)
        let sig = try key.signPersonal(Array(m.text.utf8))
        try m.verify(signature: sig, at: nbf.nanoseconds, domain: "plane.cce4long.test", nonce: "abcdefgh1234")
        #expect(throws: SIWEError.notYetValid) { try m.verify(signature: sig, at: nbf.nanoseconds - 1) }
        #expect(throws: SIWEError.expired) { try m.verify(signature: sig, at: exp.nanoseconds) }
        try m.verify(signature: sig, at: exp.nanoseconds - 1)
        #expect(throws: SIWEError.nonceMismatch) { try m.verify(signature: sig, at: nbf.nanoseconds, nonce: "other123") }
        #expect(throws: SIWEError.domainMismatch(expected: "evil.test", got: "plane.cce4long.test")) {
            try m.verify(signature: sig, at: nbf.nanoseconds, domain: "evil.test")
        }
        var other = m
        other.address = try PrivateKey.generate().address
        #expect(throws: SIWEError.self) { try other.verify(signature: sig, at: nbf.nanoseconds) }
    }

    /// A message eth-account signs verifies here; any change to the text does not.
    @Test func signedInPythonVerifiesInSwift() throws {
        var g = SeededGenerator(seed: 4361)
        var cases = [(key: [UInt8], message: SIWEMessage)]()
        for i in 0..<40 {
            var k = g.bytes(32); k[0] &= 0x7f
            let key = try PrivateKey(bytes: k)
            cases.append((k, SIWEMessage(scheme: i % 2 == 0 ? "https" : nil, domain: "localhost:\(8000 + i)", address: key.address,
                                statement: i % 3 == 0 ? nil : "Rent dataset \(i) under the cce4long terms.",
                                uri: "https://localhost:\(8000 + i)/login", chainID: UInt64(1 + i), nonce: "n0nce\(100000 + i)",
                                issuedAt: SIWETime(unixSeconds: 1_800_000_000 + Int64(i)), expirationTime: SIWETime(unixSeconds: 1_900_000_000),
                                requestID: i % 4 == 0 ? "req-\(i)" : nil, resources: i % 2 == 0 ? ["https://cce4long.test/d/\(i)"] : [])))
        }
        let sigs = try eth("siwe-sign", ["items": cases.map { ["key": Hex.encode($0.key), "text": $0.message.text] }]) as! [String]
        for (i, c) in cases.enumerated() {
            let text = c.message.text
            #expect(try SIWEMessage(parsing: text) == c.message)
            let sig = try Signature(hex: sigs[i])
            try SIWEMessage(parsing: text).verify(signature: sig, at: 1_850_000_000 * 1_000_000_000, nonce: c.message.nonce)
            var tampered = c.message
            tampered.chainID += 1
            #expect(throws: SIWEError.self) { try tampered.verify(signature: sig, at: 1_850_000_000 * 1_000_000_000) }
        }
    }

    @Test func fuzzedMessagesNeverCrash() throws {
        let positive = try loadJSON(siweData + "parsing_positive.json")
        var g = SeededGenerator(seed: 77)
        // Sorted: dictionary order differs from run to run, and the run must be reproducible.
        let seeds = positive.keys.sorted().map { Array((positive[$0]!["message"] as! String).utf8) }
        var parsed = 0
        for i in 0..<20_000 {
            var b = seeds[i % seeds.count]
            for _ in 0..<(1 + Int(g.next() % 4)) {
                switch g.next() % 4 {
                case 0: if !b.isEmpty { b[Int(g.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: g.next()) }
                case 1: if !b.isEmpty { b.remove(at: Int(g.next() % UInt64(b.count))) }
                case 2: b.insert([10, 58, 32, 45, 48][Int(g.next() % 5)], at: Int(g.next() % UInt64(b.count + 1)))
                default: b = Array(b.prefix(Int(g.next() % UInt64(b.count + 1))))
                }
            }
            if let m = try? SIWEMessage(parsing: String(decoding: b, as: UTF8.self)) {
                parsed += 1
                #expect(try SIWEMessage(parsing: m.text) == m)
            }
        }
        #expect(parsed < 20_000)
    }

    @Test func rfc3339() throws {
        #expect(RFC3339.parse("1970-01-01T00:00:00Z") == 0)
        #expect(RFC3339.parse("2021-09-30T16:25:24-02:00") == RFC3339.parse("2021-09-30T18:25:24Z"))
        #expect(RFC3339.parse("2024-02-29T00:00:00Z") != nil)
        for bad in ["2023-02-29T00:00:00Z", "2022-02-31T17:09:38.578Z", "2021-13-01T00:00:00Z", "2021-01-01 00:00:00Z",
                    "2021-01-01T24:00:00Z", "2021-01-01T00:00:00", "2021-01-01T00:00:00.Z", "2021-01-01T00:00:00+0200"] {
            #expect(RFC3339.parse(bad) == nil, "\(bad)")
        }
        #expect(RFC3339.parse("9999-12-31T23:59:59Z") == Int64.max)
        #expect(RFC3339.parse("0000-01-01T00:00:00Z") == Int64.min)
        for s: Int64 in [0, 86399, 1_700_000_000, 4_102_444_800] {
            #expect(RFC3339.parse(RFC3339.format(unixSeconds: s)) == s * 1_000_000_000)
        }
    }
}

@Suite struct KeystoreTests {
    @Test func ethAccountKeystoresOpenHere() throws {
        var g = SeededGenerator(seed: 3)
        for kdf in ["scrypt", "pbkdf2"] {
            var k = g.bytes(32); k[0] &= 0x7f
            let ks = try eth("keystore-encrypt", ["key": Hex.encode(k), "password": "correct horse ☃", "kdf": kdf,
                                                  "iterations": kdf == "scrypt" ? 4096 : 2000])
            let data = try JSONSerialization.data(withJSONObject: ks)
            let key = try Keystore.decrypt(data, password: Array("correct horse ☃".utf8))
            #expect(key.withUnsafeBytes { Array($0) } == k)
            #expect(throws: WalletError.wrongPassword) { try Keystore.decrypt(data, password: Array("wrong".utf8)) }
        }
    }

    @Test func keystoresWrittenHereOpenInEthAccount() throws {
        for kdf in [Keystore.KDF.light, .pbkdf2(iterations: 2000)] {
            let key = try PrivateKey.generate()
            let data = try Keystore.encrypt(key, password: Array("pässword".utf8), kdf: kdf)
            let r = try eth("keystore-decrypt", ["keystore": try JSONSerialization.jsonObject(with: data), "password": "pässword"]) as! [String: String]
            #expect(r["key"] == key.withUnsafeBytes { Hex.encode($0) })
            #expect(try Keystore.address(of: data) == key.address)
            #expect(try Keystore.decrypt(data, password: Array("pässword".utf8)).address == key.address)
        }
    }

    /// The parameters wallets use by default (scrypt n = 2^18), once each way.
    @Test func standardParametersBothWays() throws {
        let key = try PrivateKey.generate()
        let data = try Keystore.encrypt(key, password: Array("pw".utf8))
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"n\":262144") && text.contains("\"kdf\":\"scrypt\""))
        let r = try eth("keystore-decrypt", ["keystore": try JSONSerialization.jsonObject(with: data), "password": "pw"]) as! [String: String]
        #expect(r["key"] == key.withUnsafeBytes { Hex.encode($0) })
        let ks = try eth("keystore-encrypt", ["key": r["key"]!, "password": "pw", "kdf": "scrypt", "iterations": 262144])
        #expect(try Keystore.decrypt(try JSONSerialization.data(withJSONObject: ks), password: Array("pw".utf8)).address == key.address)
    }

    @Test func malformedKeystoresRefusedNeverCrash() throws {
        let key = try PrivateKey.generate()
        let good = try Keystore.encrypt(key, password: [1], kdf: .pbkdf2(iterations: 1))
        let text = String(decoding: good, as: UTF8.self)
        // Hostile parameters are refused before any work is done.
        for (from, to) in [("\"c\":1", "\"c\":100000000"), ("\"kdf\":\"pbkdf2\"", "\"kdf\":\"argon2\""), ("\"version\":3", "\"version\":4"),
                           ("aes-128-ctr", "aes-256-gcm"), ("\"dklen\":32", "\"dklen\":64")] {
            #expect(throws: WalletError.self, "\(to)") { try Keystore.decrypt(Data(text.replacingOccurrences(of: from, with: to).utf8), password: [1]) }
        }
        // Each scrypt parameter in range, their product not (1.9 GiB): refused at once.
        let scrypt = try Keystore.encrypt(key, password: [1], kdf: .light)
        let hostile = String(decoding: scrypt, as: UTF8.self).replacingOccurrences(of: "\"n\":4096", with: "\"n\":1048576")
            .replacingOccurrences(of: "\"r\":8", with: "\"r\":15").replacingOccurrences(of: "\"p\":1", with: "\"p\":16")
        let start = Date()
        #expect(throws: WalletError.self) { try Keystore.decrypt(Data(hostile.utf8), password: [1]) }
        #expect(Date().timeIntervalSince(start) < 1)
        var g = SeededGenerator(seed: 12)
        var opened = 0
        for _ in 0..<3000 {
            var b = Array(good)
            for _ in 0..<(1 + Int(g.next() % 3)) { b[Int(g.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: g.next()) }
            if (try? Keystore.decrypt(Data(b), password: [1])) != nil { opened += 1 }
        }
        // A change to the key material or MAC never opens; a change that keeps the JSON
        // equivalent (say, in the unused id) may.
        #expect(opened < 3000)
    }
}

/// a - b for equal-length big-endian numbers with a >= b (the malleable twin of a signature).
func subtractBE(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
    var out = a
    var borrow = 0
    for i in stride(from: a.count - 1, through: 0, by: -1) {
        var d = Int(a[i]) - Int(b[i]) - borrow
        borrow = d < 0 ? 1 : 0
        if d < 0 { d += 256 }
        out[i] = UInt8(d)
    }
    return out
}
