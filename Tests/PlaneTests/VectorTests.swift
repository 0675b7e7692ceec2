// Frozen vectors for the plane's formats (docs/plane.md §Keys, §Sign-in), the wrapped DEK
// cross-checked with Google Tink, and a seeded mutation fuzz of the token, nonce and login parsers.
import Envelope
import Foundation
import ObjectStore
@testable import PrivacyPlane
import Testing
import TestSupport
import Wallet

@Suite struct VectorTests {
    static func seq(_ start: UInt8, _ n: Int) -> [UInt8] { (0..<n).map { start &+ UInt8($0) } }

    static func keys() throws -> PlaneKeys {
        try PlaneKeys(kek: try seq(0x00, 32).withUnsafeBytes { try SecureBytes(copying: $0) }, insecure: true)
    }

    @Test func frozenVectors() throws {
        let k = try Self.keys()
        let dek = try Self.seq(0x20, 32).withUnsafeBytes { try SecureBytes(copying: $0) }
        let header = try StreamHeader(salt: Self.seq(0x40, 32), noncePrefix: Self.seq(0x60, 7))
        let wrapped = try k.wrap(dek: dek, dataset: "demo", keyNumber: 1, header: header)
        let tmp = TempDir()
        let token = try Authenticator(keys: k, store: try ObjectStores.open(url: "file://" + tmp.path), domain: "d", uri: "http://d", chainID: 1,
                                      tokenTTL: 3600, nonceTTL: 300).makeToken(try Address("0x" + Hex.encode(Self.seq(0xa0, 20))), expires: 2_000_000_000)
        let nonceMAC = Hex.encode(try k.nonceMAC(Array(("cce4-siwe-nonce-v1|2000000000" + String(repeating: "00", count: 12)).utf8)).prefix(16))
        #expect(k.identity.address.checksummed == Self.identity)
        #expect(Hex.encode(wrapped) == Self.wrapped)
        #expect(token == Self.token)
        #expect(nonceMAC == Self.nonceMAC)
        #expect(try k.unwrap(wrapped, dataset: "demo", keyNumber: 1).constantTimeEquals(dek))
    }

    static let identity = "0xf62f72Ba0d4f59cc161D18b910975f84f2746D94"
    static let wrapped = "434345345744454b010000000128404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f6061626364656605e9d381eb64d9a33a719dfef048fa732c954911c8139c02f954decdb057b04284f93d78486f9aad622ccb47f6e71ac2"
    static let token = "cce4pt1.a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3.2000000000.06cdf38289b6389f453f17582e821f1a9f3d5933ae49ebd5f2998138d69fe9b5"
    static let nonceMAC = "d66367fbb6ca47d8add640ac7d37aac7"

    @Test func vectorsMatchAnIndependentDerivation() throws {
        let r = try run(Repo.python, [Repo.root + "/Tests/interop/plane_vectors.py"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdoutText == "identity \(Self.identity)\ntoken \(Self.token)\nnonce-mac \(Self.nonceMAC)\n")
    }

    @Test func wrappedDEKOpensWithTink() throws {
        let dir = TempDir()
        let k = try Self.keys()
        let dek = try SecureBytes.random(count: 32)
        let w = try k.wrap(dek: dek, dataset: "cohort-7", keyNumber: 3)
        try writeFile(dir.sub("ct"), Array(w[13...]))
        let r = try run(Repo.python, [Repo.root + "/Tests/interop/tink_tool.py", "decrypt", Hex.encode(Self.seq(0x00, 32)),
                                      Hex.encode(PlaneKeys.wrapAAD(dataset: "cohort-7", keyNumber: 3)), "16384", dir.sub("ct"), dir.sub("pt")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try readFile(dir.sub("pt")) == dek.withUnsafeBytes { Array($0) })
    }

    @Test func mutatedTokensNoncesAndMessagesAreRefusedCleanly() throws {
        let dir = TempDir()
        let k = try Self.keys()
        let auth = Authenticator(keys: k, store: try ObjectStores.open(url: "file://" + dir.path), domain: "127.0.0.1:1", uri: "http://127.0.0.1:1",
                                 chainID: 1, tokenTTL: 3600, nonceTTL: 300)
        let now = UInt64(Date().timeIntervalSince1970)
        let user = try PrivateKey.generate()
        let token = try auth.makeToken(user.address, expires: now + 600)
        #expect(try auth.verifyToken(token, now: now) == user.address)
        let grant = try auth.issueNonce(now: now)
        _ = try auth.checkNonce(grant.nonce, now: now)
        let msg = SIWEMessage(domain: "127.0.0.1:1", address: user.address, statement: grant.statement, uri: "http://127.0.0.1:1", chainID: 1,
                              nonce: grant.nonce, issuedAt: SIWETime(unixSeconds: Int64(now)))
        let sig = try user.signPersonal(Array(msg.text.utf8)).hex
        var rng = SeededGenerator(seed: 0x91a7)
        func mutate(_ s: String) -> String {
            var b = Array(s.utf8)
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                guard !b.isEmpty else { break }
                let i = Int(rng.next() % UInt64(b.count))
                switch rng.next() % 4 {
                case 0: b[i] = UInt8(truncatingIfNeeded: rng.next())
                case 1: b.remove(at: i)
                case 2: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: i)
                default: b[i] ^= 1 << UInt8(rng.next() % 8)
                }
            }
            return String(decoding: b, as: UTF8.self)
        }
        for _ in 0..<2000 {
            let t = mutate(token)
            if t != token { #expect(throws: PlaneError.self) { try auth.verifyToken(t, now: now) } }
            let n = mutate(grant.nonce)
            if n != grant.nonce { #expect(throws: PlaneError.self) { try auth.checkNonce(n, now: now) } }
        }
        for _ in 0..<300 {
            let m = mutate(msg.text)
            if m == msg.text { continue }
            do { _ = try auth.login(message: m, signature: sig, now: now); Issue.record("a mutated message signed in") } catch {
                #expect([400, 401].contains(error.status.code))
            }
        }
        // The genuine message still works once, then is a replay.
        _ = try auth.login(message: msg.text, signature: sig, now: now)
        #expect(throws: PlaneError.self) { try auth.login(message: msg.text, signature: sig, now: now) }
    }
}
