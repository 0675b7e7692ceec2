// Cross-implementation checks against Google Tink (the Python `tink` package).
import Envelope
import Foundation
import TestSupport
import Testing

@Suite("Tink interoperability (Python tink)")
struct TinkInteropTests {
    static let tool = Repo.root + "/Tests/interop/tink_tool.py"

    static func tink(_ args: [String]) throws -> ProcessResult {
        try run(Repo.python, [tool] + args)
    }

    static let cases: [(size: Int, segment: Int)] = [
        (0, 4096), (1, 4096), (4039, 4096), (4040, 4096), (4041, 4096), (4040 + 4080, 4096), (100_000, 4096),
        (0, 65536), (65479, 65536), (65480, 65536), (65481, 65536), (3_000_000, 65536), (2_500_000, 1 << 20),
    ]

    @Test("streams written by cce4 decrypt with tink, given the key and associated data")
    func cce4ToTink() throws {
        let dir = TempDir()
        var rng = SeededGenerator(seed: 11)
        for (i, c) in Self.cases.enumerated() {
            let k = try SecureBytes.random(count: 32)
            let ad = AssociatedData.file(datasetID: "interop", fileID: rng.bytes(16))
            let pt = rng.bytes(c.size)
            let obj = try StreamEncryptor.encrypt(pt, key: k, associatedData: ad, parameters: StreamParameters(segmentSize: c.segment))
            try writeFile(dir.sub("ct\(i)"), obj)
            let r = try Self.tink(["decrypt", k.withUnsafeBytes { Hex.encode($0) }, Hex.encode(ad), "\(c.segment)", dir.sub("ct\(i)"), dir.sub("pt\(i)")])
            #expect(r.status == 0, "tink refused size \(c.size) segment \(c.segment): \(r.stderr)")
            if r.status == 0 { #expect(bytesEqual(try readFile(dir.sub("pt\(i)")), pt), "size \(c.size) segment \(c.segment)") }
        }
    }

    @Test("streams written by tink decrypt in cce4, whole and by random ranges")
    func tinkToCce4() throws {
        let dir = TempDir()
        var rng = SeededGenerator(seed: 12)
        for (i, c) in Self.cases.enumerated() {
            let k = try SecureBytes.random(count: 32)
            let ad = rng.bytes(Int.random(in: 0...40, using: &rng))
            let pt = rng.bytes(c.size)
            try writeFile(dir.sub("pt\(i)"), pt)
            let r = try Self.tink(["encrypt", k.withUnsafeBytes { Hex.encode($0) }, Hex.encode(ad), "\(c.segment)", dir.sub("pt\(i)"), dir.sub("ct\(i)")])
            try #require(r.status == 0, "tink encrypt failed: \(r.stderr)")
            let obj = try readFile(dir.sub("ct\(i)"))
            let params = try StreamParameters(segmentSize: c.segment)
            let full = try StreamDecryptor.decryptAll(obj, key: k, associatedData: ad, parameters: params)
            #expect(bytesEqual(full, pt), "full decrypt, size \(c.size) segment \(c.segment)")
            // tink's Python API cannot seek: ranges are checked against the full plaintext.
            let header = try obj.withUnsafeBytes { try StreamHeader(parsing: $0) }
            let dec = try StreamDecryptor(key: k, associatedData: ad, header: header, plaintextSize: Int64(c.size), parameters: params)
            for _ in 0..<200 {
                let off = Int.random(in: 0...c.size, using: &rng)
                let len = Int.random(in: 0...min(200_000, c.size - off + 10), using: &rng)
                let want = (Int64(off)..<Int64(off + len)).clamped(to: 0..<Int64(c.size))
                let ct = dec.ciphertextRange(forPlaintext: want)
                var out = [UInt8](repeating: 0, count: want.count)
                _ = try out.withUnsafeMutableBytes { o in
                    try obj.withUnsafeBytes { try dec.decrypt(want, ciphertext: UnsafeRawBufferPointer(rebasing: $0[Int(ct.lowerBound)..<Int(ct.upperBound)]), into: o) }
                }
                #expect(bytesEqual(out, Array(pt[Int(want.lowerBound)..<Int(want.upperBound)])), "range \(want) size \(c.size)")
            }
        }
    }

    @Test("tink refuses a tampered cce4 stream, and cce4 refuses a tampered tink stream")
    func tamperBothWays() throws {
        let dir = TempDir()
        let k = try SecureBytes.random(count: 32)
        let khex = k.withUnsafeBytes { Hex.encode($0) }
        var rng = SeededGenerator(seed: 13)
        let pt = rng.bytes(20_000)
        var obj = try StreamEncryptor.encrypt(pt, key: k, associatedData: [1, 2], parameters: StreamParameters(segmentSize: 4096))
        obj[5000] ^= 0x40
        try writeFile(dir.sub("bad"), obj)
        let r = try Self.tink(["decrypt", khex, "0102", "4096", dir.sub("bad"), dir.sub("out")])
        #expect(r.status == 3, "tink accepted a tampered stream: \(r.stderr)")

        try writeFile(dir.sub("pt"), pt)
        try #require(try Self.tink(["encrypt", khex, "0102", "4096", dir.sub("pt"), dir.sub("ct")]).status == 0)
        var t = try readFile(dir.sub("ct"))
        t[t.count - 3] ^= 1
        #expect(throws: EnvelopeError.self) { try StreamDecryptor.decryptAll(t, key: k, associatedData: [1, 2], parameters: StreamParameters(segmentSize: 4096)) }
    }

    @Test("tink decrypts the frozen test vector of docs/format.md")
    func vector() throws {
        let dir = TempDir()
        try writeFile(dir.sub("v"), try VectorTests.vector())
        let r = try Self.tink(["decrypt", Hex.encode(Array(0..<32).map(UInt8.init)), Hex.encode(Array("cce4long test vector".utf8)), "100", dir.sub("v"), dir.sub("p")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try readFile(dir.sub("p")) == Array(0..<150).map(UInt8.init))
    }
}
