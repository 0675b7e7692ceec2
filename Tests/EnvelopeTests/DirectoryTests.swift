import Envelope
import TestSupport
import Testing

func fileEntry(_ name: String, size: Int64 = 10, seed: UInt64 = 0) -> DirectoryEntry {
    var rng = SeededGenerator(seed: seed)
    return DirectoryEntry(name: Array(name.utf8), mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 123,
                          target: .file(FileRef(size: size, segmentSize: 65536, fileID: rng.bytes(16),
                                                objectKey: "objects/ab/" + Hex.encode(rng.bytes(32)), layout: .single)))
}

@Suite("Directory objects")
struct DirectoryTests {
    static let sample: [DirectoryEntry] = [
        fileEntry("zeta.csv", size: 5),
        DirectoryEntry(name: Array("sub".utf8), mode: 0o755, mtimeSeconds: -5, mtimeNanoseconds: 999_999_999,
                       target: .directory(DirectoryRef(hash: SHA256Digest.hash([1]), objectSize: 1000, entryCount: 3, subdirectoryCount: 1))),
        DirectoryEntry(name: Array("link".utf8), mode: 0o777, mtimeSeconds: 0, mtimeNanoseconds: 0, target: .symlink(Array("sub/x".utf8))),
        DirectoryEntry(name: [0xff, 0xfe, 0x41], mode: 0o600, mtimeSeconds: 1, mtimeNanoseconds: 1,
                       target: .file(FileRef(size: 1 << 33, segmentSize: 65536, fileID: Array(repeating: 3, count: 16),
                                             objectKey: "objects/cd/x", layout: .parts(partSize: 65536 * 128)))),
        fileEntry("alpha", size: 0, seed: 4),
    ]

    @Test("encode, decode, lookup: every field survives, names sort bytewise, non-UTF-8 names work")
    func roundTrip() throws {
        let body = try DirectoryCodec.encode(Self.sample)
        let listing = try DirectoryListing(plaintext: body)
        let all = try listing.validateAll()
        #expect(all.map(\.name) == Self.sample.map(\.name).sorted { $0.lexicographicallyPrecedes($1) })
        for e in Self.sample { #expect(try listing.lookup(e.name) == e) }
        #expect(try listing.lookup(Array("nope".utf8)) == nil)
        #expect(try listing.lookup([0xff]) == nil)
    }

    @Test("duplicate names and invalid names are refused at encode time")
    func invalid() {
        #expect(throws: EnvelopeError.self) { try DirectoryCodec.encode([fileEntry("a"), fileEntry("a")]) }
        for bad in ["", ".", "..", "a/b", String(repeating: "x", count: 256)] {
            #expect(throws: EnvelopeError.self, "name '\(bad)'") { try DirectoryCodec.encode([fileEntry(bad)]) }
        }
    }

    @Test("a 100,000-entry directory seals, opens, and looks names up without decoding every entry")
    func large() throws {
        var entries = [DirectoryEntry]()
        entries.reserveCapacity(100_000)
        for i in 0..<100_000 { entries.append(fileEntry("sample_\(i).npy", size: Int64(i), seed: UInt64(i))) }
        let k = try SecureBytes.random(count: 32)
        let (object, hash) = try DirectoryObject.seal(entries, datasetID: "big", key: k)
        let listing = try DirectoryObject.open(object, expectedHash: hash, datasetID: "big", key: k)
        #expect(listing.count == 100_000)
        for i in stride(from: 0, to: 100_000, by: 997) {
            let e = try #require(try listing.lookup(Array("sample_\(i).npy".utf8)))
            #expect(e.size == Int64(i))
        }
        #expect(try listing.validateAll().count == 100_000)
    }

    @Test("a directory object is refused when flipped, swapped for another directory's, or opened under another dataset")
    func tamper() throws {
        let k = try SecureBytes.random(count: 32)
        let (a, ha) = try DirectoryObject.seal(Self.sample, datasetID: "ds", key: k)
        let (b, _) = try DirectoryObject.seal([fileEntry("other")], datasetID: "ds", key: k)
        var rng = SeededGenerator(seed: 3)
        for _ in 0..<100 {
            var t = a
            let pos = Int.random(in: 0..<t.count, using: &rng)
            t[pos] ^= UInt8.random(in: 1...255, using: &rng)
            #expect(throws: EnvelopeError.self) { try DirectoryObject.open(t, expectedHash: ha, datasetID: "ds", key: k) }
        }
        #expect(throws: EnvelopeError.self) { try DirectoryObject.open(b, expectedHash: ha, datasetID: "ds", key: k) }
        // Even with a matching hash, the dataset id is bound into the key derivation.
        #expect(throws: EnvelopeError.self) { try DirectoryObject.open(a, expectedHash: ha, datasetID: "other", key: k) }
        _ = try DirectoryObject.open(a, expectedHash: ha, datasetID: "ds", key: k)
    }
}

/// Malformed input to every decoder: truncated, oversized, random and mutated bytes must
/// give an error, never a crash or a wrong answer. Seeded, so failures reproduce.
@Suite("Object keys in directory entries")
struct EntryObjectKeyTests {
    @Test("the one-pass check accepts exactly the clean relative keys (200,000 random keys)")
    func matchesRules() {
        func reference(_ key: String) -> Bool {
            let u = Array(key.utf8)
            guard !u.isEmpty, u.count <= DirectoryLimits.maxObjectKeyLength else { return false }
            for c in u where !((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c == 0x2f || c == 0x2d || c == 0x5f || c == 0x2e) { return false }
            return u.first != 0x2f && !key.contains("..") && !key.contains("//")
        }
        let r = differentialKeyCheck(alphabet: "./-a_Z9 ", maxLength: 8, seed: 78, { (try? validateObjectKey($0)) != nil }, reference: reference)
        #expect(r.mismatch == nil, "the one-pass check and the rules disagree on \(r.mismatch ?? "")")
        #expect(r.accepted > 1000)
    }
}

@Suite("Malformed input")
struct MalformedInputTests {
    static func exercise(_ body: [UInt8]) {
        guard let listing = try? DirectoryListing(plaintext: body) else { return }
        // Whatever parses must be internally consistent: each entry decodes or throws.
        for i in 0..<min(listing.count, 64) { _ = try? listing.entry(at: i) }
        _ = try? listing.lookup(Array("zeta.csv".utf8))
        _ = try? listing.validateAll()
    }

    @Test("directory bodies: every truncation, random bytes, and 20,000 seeded mutations")
    func directoryBodies() throws {
        let valid = try DirectoryCodec.encode(DirectoryTests.sample)
        for cut in 0..<valid.count { Self.exercise(Array(valid[0..<cut])) }
        var rng = SeededGenerator(seed: 2024)
        for _ in 0..<2000 { Self.exercise(rng.bytes(Int.random(in: 0...300, using: &rng))) }
        for _ in 0..<20_000 {
            var m = valid
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: m[Int.random(in: 0..<m.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                case 1: m.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...m.count, using: &rng))
                case 2: if m.count > 1 { m.remove(at: Int.random(in: 0..<m.count, using: &rng)) }
                default:
                    let i = Int.random(in: 0..<max(1, m.count - 4), using: &rng)
                    for j in i..<min(m.count, i + 4) { m[j] = 0xff }
                }
            }
            Self.exercise(m)
        }
        // Header claims far more entries than the body holds: refused without allocating them.
        var huge = Array("C4DR".utf8) + [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
        #expect(throws: EnvelopeError.self) { try DirectoryListing(plaintext: huge) }
        huge[4] = 2
        #expect(throws: EnvelopeError.self) { try DirectoryListing(plaintext: huge) }
    }

    @Test("whole objects: random, truncated and oversized streams are refused by every opener")
    func objects() throws {
        let k = try SecureBytes.random(count: 32)
        let (dir, _) = try DirectoryObject.seal(DirectoryTests.sample, datasetID: "ds", key: k)
        var rng = SeededGenerator(seed: 77)
        for n in [0, 1, 39, 40, 55, 56, 57, 1000, 70_000] {
            let junk = rng.bytes(n)
            #expect(throws: (any Error).self) { try StreamDecryptor.decryptAll(junk, key: k, associatedData: [], parameters: .default) }
            #expect(throws: (any Error).self) { try DirectoryObject.open(junk, expectedHash: SHA256Digest.hash(junk), datasetID: "ds", key: k) }
            #expect(throws: (any Error).self) { try junk.withUnsafeBytes { try StreamHeader(parsing: $0) } }
        }
        for cut in stride(from: 0, to: dir.count, by: 7) {
            let t = Array(dir[0..<cut])
            #expect(throws: (any Error).self) { try DirectoryObject.open(t, expectedHash: SHA256Digest.hash(t), datasetID: "ds", key: k) }
        }
        let oversized = dir + rng.bytes(5000)
        #expect(throws: (any Error).self) { try DirectoryObject.open(oversized, expectedHash: SHA256Digest.hash(oversized), datasetID: "ds", key: k) }
    }
}

@Suite("Directory body vector")
struct DirectoryVectorTests {
    /// docs/format.md §3.4, computed independently from the spec (Python struct).
    static let frozen = "43344452010000000000000300000000000000400000008105612e6373760101a4000000006553f1001dcd6500000000000000000500004000000102030405060708090a0b0c0d0e0f000d6f626a656374732f61622f616201640201ed000000000000000100000000e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85500000000000000380000000000000000016c0301ff0000000000000000000000000005612e637376"

    @Test("the frozen directory body of docs/format.md encodes and decodes exactly")
    func vector() throws {
        let entries = [
            DirectoryEntry(name: Array("l".utf8), mode: 0o777, mtimeSeconds: 0, mtimeNanoseconds: 0, target: .symlink(Array("a.csv".utf8))),
            DirectoryEntry(name: Array("a.csv".utf8), mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 500_000_000,
                           target: .file(FileRef(size: 5, segmentSize: 16384, fileID: Array(0..<16).map(UInt8.init), objectKey: "objects/ab/ab", layout: .single))),
            DirectoryEntry(name: Array("d".utf8), mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0,
                           target: .directory(DirectoryRef(hash: SHA256Digest.hash([]), objectSize: 56, entryCount: 0, subdirectoryCount: 0))),
        ]
        #expect(Hex.encode(try DirectoryCodec.encode(entries)) == Self.frozen)
        let listing = try DirectoryListing(plaintext: Hex.decode(Self.frozen)!)
        #expect(try listing.validateAll().map(\.name) == [Array("a.csv".utf8), [0x64], [0x6c]])
    }
}
