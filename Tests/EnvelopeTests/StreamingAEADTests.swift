import Envelope
import Foundation
import TestSupport
import Testing

let testKey: SecureBytes = key(Array(0..<32).map(UInt8.init))
func key(_ bytes: [UInt8]) -> SecureBytes { try! bytes.withUnsafeBytes { try SecureBytes(copying: $0) } }

@Suite("Streaming AEAD layout")
struct StreamLayoutTests {
    @Test("sizes round-trip between plaintext and ciphertext for every length near segment boundaries")
    func sizes() throws {
        for seg in [57, 100, 4096, 65536] {
            let p = try StreamParameters(segmentSize: seg)
            var lengths: [Int64] = [0, 1, 2]
            for k in 0..<4 {
                let b = Int64(p.firstSegmentPlaintext) + Int64(k) * Int64(p.segmentPlaintext)
                lengths += [b - 1, b, b + 1]
            }
            for l in lengths {
                let c = p.ciphertextSize(plaintextSize: l)
                #expect(p.plaintextSize(ciphertextSize: c) == l, "segment \(seg) length \(l)")
                #expect(c == 40 + l + 16 * p.segmentCount(plaintextSize: l))
            }
            // Lengths that no stream has: shorter than header + tag, or a last segment under 16 bytes.
            #expect(p.plaintextSize(ciphertextSize: 55) == nil)
            #expect(p.plaintextSize(ciphertextSize: Int64(seg) + 5) == nil)
        }
    }

    @Test("ciphertext ranges cover exactly the spanned segments")
    func ranges() throws {
        let p = try StreamParameters(segmentSize: 100)  // P0 = 44, P = 84
        let size: Int64 = 1000
        #expect(p.ciphertextRange(forPlaintext: 0..<1, plaintextSize: size) == 40..<100)
        #expect(p.ciphertextRange(forPlaintext: 43..<45, plaintextSize: size) == 40..<200)
        #expect(p.ciphertextRange(forPlaintext: 44..<45, plaintextSize: size) == 100..<200)
        #expect(p.ciphertextRange(forPlaintext: 990..<5000, plaintextSize: size) == p.ciphertextRange(forPlaintext: 990..<1000, plaintextSize: size))
        #expect(p.ciphertextRange(forPlaintext: 2000..<3000, plaintextSize: size).isEmpty)
        #expect(p.ciphertextRange(forPlaintext: 0..<size, plaintextSize: size).upperBound == p.ciphertextSize(plaintextSize: size))
    }

    @Test("segment sizes outside the supported range are refused")
    func badParameters() {
        #expect(throws: EnvelopeError.self) { try StreamParameters(segmentSize: 56) }
        #expect(throws: EnvelopeError.self) { try StreamParameters(segmentSize: (8 << 20) + 1) }
    }
}

@Suite("Streaming AEAD round trips")
struct RoundTripTests {
    static func roundTrip(size: Int, segment: Int, randomReads: Int, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        let plaintext = size > 1 << 20 ? try Random.bytes(size) : rng.bytes(size)
        let params = try StreamParameters(segmentSize: segment)
        let ad = Array("dataset=d1 file=42".utf8)
        let object = try StreamEncryptor.encrypt(plaintext, key: testKey, associatedData: ad, parameters: params)
        #expect(Int64(object.count) == params.ciphertextSize(plaintextSize: Int64(size)))
        let back = try StreamDecryptor.decryptAll(object, key: testKey, associatedData: ad, parameters: params)
        #expect(bytesEqual(back, plaintext), "full decrypt of \(size) bytes with \(segment)-byte segments")

        let header = try object.withUnsafeBytes { try StreamHeader(parsing: $0) }
        let dec = try StreamDecryptor(key: testKey, associatedData: ad, header: header, plaintextSize: Int64(size), parameters: params)
        var out = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<randomReads {
            let off = Int64.random(in: 0...Int64(size), using: &rng)
            // Mostly small reads, some spanning many segments, some past the end.
            let maxLen: Int64 = [64, 4096, 300_000, Int64(size) + 10][Int.random(in: 0..<4, using: &rng)]
            let len = min(Int64(out.count), Int64.random(in: 0...max(0, maxLen), using: &rng))
            let range = off..<(off + len)
            let ct = dec.ciphertextRange(forPlaintext: range)
            let n = try out.withUnsafeMutableBytes { o in
                try object.withUnsafeBytes { obj in
                    try dec.decrypt(range, ciphertext: UnsafeRawBufferPointer(rebasing: obj[Int(ct.lowerBound)..<Int(ct.upperBound)]), into: o)
                }
            }
            let expected = range.clamped(to: 0..<Int64(size))
            #expect(n == expected.count)
            let ok = out.withUnsafeBytes { o in
                plaintext.withUnsafeBytes { p in
                    bytesEqual(UnsafeRawBufferPointer(rebasing: o[0..<n]), UnsafeRawBufferPointer(rebasing: p[Int(expected.lowerBound)..<Int(expected.upperBound)]))
                }
            }
            if !ok { Issue.record("range \(range) of \(size) bytes (segment \(segment)) differs"); return }
        }
    }

    @Test("sizes around segment boundaries, with 1,000 random ranged reads each",
          arguments: [4096, 65536])
    func boundaries(segment: Int) throws {
        let p = try StreamParameters(segmentSize: segment)
        let p0 = p.firstSegmentPlaintext, ps = p.segmentPlaintext
        let sizes = [0, 1, p0 - 1, p0, p0 + 1, p0 + ps - 1, p0 + ps, p0 + ps + 1, p0 + 5 * ps + 17]
        for (i, s) in sizes.enumerated() {
            try Self.roundTrip(size: s, segment: segment, randomReads: 1000, seed: UInt64(i * 7 + segment))
        }
    }

    @Test("a file over 100 MiB: full round trip and 10,000 random (offset, length) reads")
    func large() throws {
        try Self.roundTrip(size: 100 << 20 + 12_345, segment: StreamParameters.defaultSegmentSize, randomReads: 10_000, seed: 99)
    }

    @Test("the streaming writer segments arbitrary write sizes exactly like one big write")
    func writerMatches() throws {
        var rng = SeededGenerator(seed: 5)
        let params = try StreamParameters(segmentSize: 4096)
        let header = try StreamHeader(salt: Array(repeating: 7, count: 32), noncePrefix: Array(repeating: 9, count: 7))
        for size in [0, 1, 4040, 4041, 4040 + 4080, 50_000] {
            let pt = rng.bytes(size)
            let whole = try StreamEncryptor.encrypt(pt, key: testKey, associatedData: [1], parameters: params, header: header)
            var streamed = [UInt8]()
            let w = try StreamWriter(encryptor: StreamEncryptor(key: testKey, associatedData: [1], parameters: params, header: header)) { streamed += $0 }
            var pos = 0
            while pos < pt.count {
                let n = min(pt.count - pos, Int.random(in: 1...9000, using: &rng))
                try pt.withUnsafeBytes { try w.write(UnsafeRawBufferPointer(rebasing: $0[pos..<pos + n])) }
                pos += n
            }
            try w.finish()
            #expect(streamed == whole, "size \(size)")
        }
    }
}

@Suite("Streaming AEAD tampering")
struct StreamTamperTests {
    let params = try! StreamParameters(segmentSize: 4096)
    let ad = Array("ad".utf8)

    func object(_ size: Int) throws -> ([UInt8], [UInt8]) {
        var rng = SeededGenerator(seed: UInt64(size))
        let pt = rng.bytes(size)
        return (pt, try StreamEncryptor.encrypt(pt, key: testKey, associatedData: ad, parameters: params))
    }

    func expectRefused(_ obj: [UInt8], ad: [UInt8]? = nil, key k: SecureBytes? = nil, _ what: String) {
        do {
            _ = try StreamDecryptor.decryptAll(obj, key: k ?? testKey, associatedData: ad ?? self.ad, parameters: params)
            Issue.record("\(what): tampered stream decrypted")
        } catch let e as EnvelopeError {
            #expect(e.isIntegrityFailure, "\(what): \(e)")
        } catch {
            Issue.record("\(what): unexpected error \(error)")
        }
    }

    @Test("a flipped bit anywhere (header, body, tag) is refused")
    func flips() throws {
        let (_, obj) = try object(3 * 4080 + 100)
        var rng = SeededGenerator(seed: 1)
        var positions = Array(0..<48) + [4095, 4096, obj.count - 1, obj.count - 16]
        for _ in 0..<200 { positions.append(Int.random(in: 0..<obj.count, using: &rng)) }
        for pos in positions {
            var t = obj
            t[pos] ^= 1 << UInt8(pos % 8)
            expectRefused(t, "bit flip at \(pos)")
        }
    }

    @Test("truncation at every segment boundary and mid-segment is refused")
    func truncation() throws {
        let (_, obj) = try object(4 * 4080)
        for cut in [4096, 8192, 12288, 16384, obj.count - 1, obj.count - 16, 40, 56, 100] where cut < obj.count {
            expectRefused(Array(obj[0..<cut]), "truncated to \(cut)")
        }
        let (_, empty) = try object(0)
        expectRefused(Array(empty[0..<40]), "empty stream without its tag")
    }

    @Test("reordered segments, a spliced foreign segment, wrong associated data and wrong key are refused")
    func swaps() throws {
        let (_, a) = try object(3 * 4096)
        var swapped = a
        swapped.replaceSubrange(4096..<8192, with: a[8192..<12288])
        swapped.replaceSubrange(8192..<12288, with: a[4096..<8192])
        expectRefused(swapped, "segments 1 and 2 swapped")
        let (_, b) = try object(3 * 4096)
        var spliced = a
        spliced.replaceSubrange(4096..<8192, with: b[4096..<8192])
        expectRefused(spliced, "segment from another stream")
        expectRefused(a, ad: Array("other".utf8), "wrong associated data")
        expectRefused(a, key: key(Array(repeating: 1, count: 32)), "wrong key")
        var extended = a
        extended += Array(repeating: 0, count: 100)
        expectRefused(extended, "appended bytes")
    }
}

@Suite("Primitives and vectors")
struct VectorTests {
    @Test("HKDF-SHA256 matches RFC 5869 test case 1")
    func hkdf() throws {
        let ikm = key(Array(repeating: 0x0b, count: 22))
        let salt = Array(0...12).map(UInt8.init)
        let info = Array(0xf0...0xf9).map(UInt8.init)
        let okm = try salt.withUnsafeBytes { s in try info.withUnsafeBytes { i in try HKDF.deriveKey(ikm: ikm, salt: s, info: i, length: 42) } }
        let hex = okm.withUnsafeBytes { Hex.encode($0) }
        #expect(hex == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    }

    @Test("SHA-256 of 'abc' (FIPS 180-2)")
    func sha256() {
        #expect(SHA256Digest.hash(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// docs/format.md §2.5: key 00..1f, salt 20..3f, nonce prefix 40..46, segment size 100,
    /// associated data "cce4long test vector", plaintext bytes 0..149.
    static func vector() throws -> [UInt8] {
        let header = try StreamHeader(salt: Array(0x20...0x3f).map(UInt8.init), noncePrefix: Array(0x40...0x46).map(UInt8.init))
        return try StreamEncryptor.encrypt(Array(0..<150).map(UInt8.init), key: testKey, associatedData: Array("cce4long test vector".utf8),
                                           parameters: StreamParameters(segmentSize: 100), header: header)
    }

    @Test("the frozen stream test vector of docs/format.md")
    func streamVector() throws {
        let v = try Self.vector()
        #expect(v.count == 40 + 150 + 3 * 16)
        #expect(Hex.encode(v[0..<40]) == "28202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243444546")
        #expect(SHA256Digest.hash(v).hex == VectorTests.frozenVectorSHA256, "full vector: \(Hex.encode(v))")
    }

    static let frozenVectorSHA256 = "2d510e184bcb49a9a4ed533e1035835defb179d7d3f72698099e604d114e6a4c"

    @Test("SecureBytes never prints its contents and compares in constant time")
    func secureBytes() throws {
        let k = key(Array(repeating: 0xab, count: 32))
        #expect(!"\(k)".contains("ab"))
        #expect(String(reflecting: k) == "SecureBytes(32 bytes, redacted)")
        #expect(k.constantTimeEquals(key(Array(repeating: 0xab, count: 32))))
        #expect(!k.constantTimeEquals(key(Array(repeating: 0xac, count: 32))))
    }

    @Test("key files parse, and errors never echo the content")
    func keyFile() throws {
        let k = key(Array(0..<32).map(UInt8.init))
        let text = InsecureKeyFile.encode(k)
        let back = try text.withUnsafeBytes { try InsecureKeyFile.parse($0) }
        #expect(back.constantTimeEquals(k))
        var bad = text
        bad[30] = UInt8(ascii: "z")
        do {
            _ = try bad.withUnsafeBytes { try InsecureKeyFile.parse($0) }
            Issue.record("bad key file parsed")
        } catch {
            let msg = "\(error)"
            #expect(!msg.contains(String(decoding: text[21..<40], as: UTF8.self)))
        }
        for junk in [[UInt8](), Array("cce4-insecure-key-v1".utf8), Array(repeating: 0x41, count: 200)] {
            #expect(throws: (any Error).self) { try junk.withUnsafeBytes { try InsecureKeyFile.parse($0) } }
        }
    }
}
