import Dataset
import Envelope
import Foundation
import ObjectStore
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A packed fixture: a source tree, its store and key, and the root hash.
final class Fixture: @unchecked Sendable {
    let dir = TempDir("cce4-dataset")
    let key: SecureBytes
    let store: FileObjectStore
    var root: SHA256Digest
    let dataset = "cohort-1"
    var files: [String: [UInt8]] = [:]
    var src: String { dir.sub("src") }

    init(partSize: Int64? = nil, segment: Int = 4096, extraLarge: Bool = false) throws {
        key = try SecureBytes.random(count: 32)
        store = try FileObjectStore(root: dir.sub("store"), create: true)
        var rng = SeededGenerator(seed: 42)
        let p = try StreamParameters(segmentSize: segment)
        let sizes = [0, 1, p.firstSegmentPlaintext - 1, p.firstSegmentPlaintext, p.firstSegmentPlaintext + 1, 3 * segment + 5, 200_000]
        for (i, s) in sizes.enumerated() { files["sizes/f\(i).bin"] = rng.bytes(s) }
        files["cohort/participants.csv"] = Array("id,age\n1,71\n2,85\n".utf8)
        files["cohort/visits/2025/visit.csv"] = rng.bytes(5000)
        files["a/b/c/d/e/deep.txt"] = Array("deep".utf8)
        files["same1.bin"] = Array(repeating: 7, count: 10_000)
        files["same2.bin"] = rng.bytes(10_000)
        if extraLarge { files["large.bin"] = try Random.bytes(12 << 20) }
        let src = dir.sub("src")
        for (path, bytes) in files { try writeFile(src + "/" + path, bytes) }
        try FileManager.default.createDirectory(atPath: src + "/empty-dir", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: src + "/latest.csv", withDestinationPath: "cohort/participants.csv")
        var options = PackOptions()
        options.parameters = p
        options.partSize = partSize
        root = try Packer(store: store, datasetID: dataset, key: key, options: options).pack(source: src).root
    }

    func reader(root r: SHA256Digest? = nil, key k: SecureBytes? = nil) throws -> DatasetReader {
        try DatasetReader(store: store, datasetID: dataset, root: r ?? root, key: k ?? key)
    }

    func fileRef(_ path: String, root r: SHA256Digest? = nil) throws -> FileRef {
        guard case .entry(let e, _) = try reader(root: r).resolve(path), case .file(let f) = e.target else { throw DatasetError.noSuchPath(path) }
        return f
    }

    func objectPath(_ f: FileRef, part: Int? = nil) -> String {
        store.root + "/" + dataset + "/" + f.objectKey + (part.map { ".\($0)" } ?? "")
    }

    func read(_ path: String, root r: SHA256Digest? = nil) throws -> [UInt8] {
        let f = try fileRef(path, root: r)
        return try reader(root: r).open(f).read(0..<f.size)
    }
}

/// Asserts that `body` fails with an integrity error (never returns bytes).
func expectIntegrityFailure(_ what: String, _ body: () throws -> Any) {
    do {
        _ = try body()
        Issue.record("\(what): read succeeded on a tampered store")
    } catch DatasetError.integrity {
    } catch {
        Issue.record("\(what): expected an integrity error, got \(error)")
    }
}

@Suite("Packed datasets")
struct PackedDatasetTests {
    @Test("pack and read back: every file, symlink and directory, byte-exact")
    func roundTrip() throws {
        let fx = try Fixture()
        let r = try fx.reader()
        for (path, bytes) in fx.files { #expect(bytesEqual(try fx.read(path), bytes), "\(path)") }
        guard case .entry(let link, _) = try r.resolve("latest.csv"), case .symlink(let t) = link.target else { Issue.record("symlink missing"); return }
        #expect(t == Array("cohort/participants.csv".utf8))
        guard case .entry(let empty, _) = try r.resolve("/empty-dir/"), case .directory(let d) = empty.target else { Issue.record("empty dir missing"); return }
        #expect(d.entryCount == 0)
        #expect(throws: DatasetError.self) { try r.resolve("nope/x") }
        #expect(throws: DatasetError.self) { try r.resolve("cohort/participants.csv/x") }
        #expect(throws: DatasetError.self) { try r.resolve("../etc") }
        let report = Verifier(reader: r).run()
        #expect(report.ok, "\(report.problems)")
        #expect(report.files == fx.files.count && report.symlinks == 1)
        // The store holds no names: no object key contains a source name.
        for o in try fx.store.listAll(prefix: "") {
            let key = String(o.key.rawValue.dropFirst(fx.dataset.count))
            for name in ["cohort", "participants", "deep", "sizes", "latest"] { #expect(!key.contains(name)) }
        }
    }

    @Test("files stored as parts read back byte-exact, with random ranges across part boundaries")
    func parts() throws {
        let fx = try Fixture(partSize: 4096 * 3, extraLarge: true)
        let f = try fx.fileRef("large.bin")
        guard case .parts(let ps) = f.layout else { Issue.record("large file not in parts"); return }
        #expect(ps == 4096 * 3 && f.parts.count > 1000)
        let file = try fx.reader().open(f)
        let plain = fx.files["large.bin"]!
        var rng = SeededGenerator(seed: 8)
        for _ in 0..<2000 {
            let off = Int64.random(in: 0..<f.size, using: &rng)
            let len = Int64.random(in: 1...100_000, using: &rng)
            let got = try file.read(off..<off + len)
            let end = Int(min(f.size, off + len))
            #expect(bytesEqual(got, Array(plain[Int(off)..<end])))
        }
        #expect(Verifier(reader: try fx.reader()).run().ok)
    }

    @Test("a sequential stream opens the next part ahead and hints its reader; random reads do not")
    func partsAhead() throws {
        let fx = try Fixture(partSize: 4096 * 3, extraLarge: true)
        let f = try fx.fileRef("large.bin")
        let store = RecordingStore(fx.store)
        let reader = try DatasetReader(store: store, datasetID: fx.dataset, root: fx.root, key: fx.key)
        let plain = fx.files["large.bin"]!
        let partKey = { (i: Int) in (try? reader.layout.storeKey(f.parts[i].key).rawValue) ?? "?" }
        // Random reads, far apart: parts open when touched, never ahead.
        let random = try reader.open(f)
        for off: Int64 in [5_000_000, 100_000, 9_000_000] {
            #expect(bytesEqual(try random.read(off..<off + 100), Array(plain[Int(off)..<Int(off) + 100])))
        }
        usleep(100_000)
        #expect(store.events.filter { $0.hasPrefix("ahead") }.isEmpty)
        // A stream: once it has read half of a part, the next one opens in the background.
        store.reset()
        let stream = try reader.open(f)
        var off: Int64 = 0
        while off < 4096 * 2 {
            #expect(bytesEqual(try stream.read(off..<off + 1024), Array(plain[Int(off)..<Int(off) + 1024])))
            off += 1024
        }
        var events = store.events
        for _ in 0..<100 where !events.contains("ahead " + partKey(1)) { usleep(10_000); events = store.events }
        #expect(events.contains("open " + partKey(1)), "\(events)")
        #expect(events.contains("ahead " + partKey(1)), "\(events)")
        // Reading on uses the part opened ahead: it is not opened again.
        while off < 4096 * 4 {
            #expect(bytesEqual(try stream.read(off..<off + 1024), Array(plain[Int(off)..<Int(off) + 1024])))
            off += 1024
        }
        #expect(store.events.filter { $0 == "open " + partKey(1) }.count == 1)
    }

    @Test("a flipped byte in any sampled position of a file object is refused")
    func flippedFileByte() throws {
        let fx = try Fixture()
        let f = try fx.fileRef("sizes/f6.bin")
        let path = fx.objectPath(f)
        let original = try readFile(path)
        var rng = SeededGenerator(seed: 1)
        var positions = [0, 1, 20, 39, 40, 41, 4095, 4096, original.count - 1, original.count - 16]
        for _ in 0..<40 { positions.append(Int.random(in: 0..<original.count, using: &rng)) }
        for pos in positions {
            var t = original
            t[pos] ^= 0x5a
            try writeFile(path, t)
            expectIntegrityFailure("flip at \(pos)") { try fx.read("sizes/f6.bin") }
        }
        try writeFile(path, original)
        #expect(bytesEqual(try fx.read("sizes/f6.bin"), fx.files["sizes/f6.bin"]!))
    }

    @Test("a flipped byte in a directory object is refused, for the root and a subdirectory")
    func flippedDirectoryByte() throws {
        let fx = try Fixture()
        guard case .entry(let e, _) = try fx.reader().resolve("cohort"), case .directory(let d) = e.target else { throw DatasetError.noSuchPath("cohort") }
        for hash in [fx.root, d.hash] {
            let path = fx.store.root + "/" + (try fx.reader().objectKey(ofDirectory: hash))
            let original = try readFile(path)
            for pos in [0, 40, original.count / 2, original.count - 1] {
                var t = original
                t[pos] ^= 1
                try writeFile(path, t)
                expectIntegrityFailure("dir flip at \(pos)") { try fx.read("cohort/participants.csv") }
            }
            try writeFile(path, original)
        }
    }

    @Test("two file objects of the same size swapped: both refused")
    func swapped() throws {
        let fx = try Fixture()
        let a = try fx.fileRef("same1.bin"), b = try fx.fileRef("same2.bin")
        #expect(a.size == b.size)
        let pa = fx.objectPath(a), pb = fx.objectPath(b)
        let ba = try readFile(pa), bb = try readFile(pb)
        try writeFile(pa, bb); try writeFile(pb, ba)
        expectIntegrityFailure("swapped a") { try fx.read("same1.bin") }
        expectIntegrityFailure("swapped b") { try fx.read("same2.bin") }
    }

    @Test("an object truncated at a segment boundary is refused")
    func truncated() throws {
        let fx = try Fixture()
        let f = try fx.fileRef("sizes/f5.bin")  // 3 segments + 5 bytes: four segments
        let path = fx.objectPath(f)
        let original = try readFile(path)
        for cut in [4096, 8192, 12288] {
            try writeFile(path, Array(original[0..<cut]))
            expectIntegrityFailure("cut at \(cut)") { try fx.read("sizes/f5.bin") }
            // Even a read of the intact first segment refuses a stream of the wrong length.
            expectIntegrityFailure("cut at \(cut), first byte") { try fx.reader().open(f).read(0..<1) }
        }
    }

    @Test("an object replaced by an older version of the same path is refused (rollback)")
    func rolledBack() throws {
        let fx = try Fixture()
        let v1 = try fx.fileRef("cohort/participants.csv")
        let v1Bytes = try readFile(fx.objectPath(v1))
        // Version 2 of the same dataset, same store, same key: the file changed size-neutrally.
        try writeFile(fx.src + "/cohort/participants.csv", Array("id,age\n1,72\n2,86\n".utf8))
        let root2 = try Packer(store: fx.store, datasetID: fx.dataset, key: fx.key, options: { var o = PackOptions(); o.parameters = try! StreamParameters(segmentSize: 4096); return o }()).pack(source: fx.src).root
        #expect(root2 != fx.root)
        let v2 = try fx.fileRef("cohort/participants.csv", root: root2)
        #expect(try fx.read("cohort/participants.csv", root: root2) == Array("id,age\n1,72\n2,86\n".utf8))
        try writeFile(fx.objectPath(v2), v1Bytes)
        expectIntegrityFailure("rollback") { try fx.read("cohort/participants.csv", root: root2) }
        // The old version still reads as itself, under its own root.
        #expect(try fx.read("cohort/participants.csv") == Array("id,age\n1,71\n2,85\n".utf8))
    }

    @Test("a directory object replaced by another directory's is refused")
    func directorySwap() throws {
        let fx = try Fixture()
        let r = try fx.reader()
        guard case .entry(let c, _) = try r.resolve("cohort"), case .directory(let cd) = c.target,
              case .entry(let s, _) = try r.resolve("sizes"), case .directory(let sd) = s.target else { throw DatasetError.noSuchPath("dirs") }
        let pc = fx.store.root + "/" + r.objectKey(ofDirectory: cd.hash), ps = fx.store.root + "/" + r.objectKey(ofDirectory: sd.hash)
        try writeFile(pc, try readFile(ps))
        expectIntegrityFailure("dir swap") { try fx.reader().resolve("cohort/participants.csv") }
        // The root replaced by a subdirectory's object is refused too.
        try writeFile(fx.store.root + "/" + r.objectKey(ofDirectory: fx.root), try readFile(ps))
        expectIntegrityFailure("root swap") { try fx.reader().rootDirectory() }
    }

    @Test("a wrong key or a wrong dataset id is refused at the root")
    func wrongKey() throws {
        let fx = try Fixture()
        expectIntegrityFailure("wrong key") { try fx.reader(key: try SecureBytes.random(count: 32)).rootDirectory() }
        let other = try DatasetReader(store: fx.store, datasetID: "cohort-2", root: fx.root, key: fx.key)
        #expect(throws: DatasetError.self) { try other.rootDirectory() }
    }

    @Test("verify keeps going and names every bad object, never a decrypted name")
    func verifyNamesObjects() throws {
        let fx = try Fixture()
        let bad1 = try fx.fileRef("cohort/visits/2025/visit.csv"), bad2 = try fx.fileRef("sizes/f6.bin")
        for f in [bad1, bad2] {
            var b = try readFile(fx.objectPath(f)); b[b.count / 2] ^= 0xff
            try writeFile(fx.objectPath(f), b)
        }
        let report = Verifier(reader: try fx.reader()).run()
        #expect(report.problems.count == 2)
        let named = Set(report.problems.map(\.object))
        #expect(named == [fx.dataset + "/" + bad1.objectKey, fx.dataset + "/" + bad2.objectKey])
        for p in report.problems { #expect(!p.description.contains("visit") && !p.description.contains("f6.bin") && p.path == nil) }
        #expect(Verifier(reader: try fx.reader(), showNames: true).run().problems.contains { $0.path == "/cohort/visits/2025/visit.csv" })
    }

    @Test("special files are refused before anything is written")
    func specialFiles() throws {
        let dir = TempDir()
        try writeFile(dir.sub("src/ok.txt"), [1])
        #expect(mkfifo(dir.sub("src/pipe"), 0o644) == 0)
        let store = try FileObjectStore(root: dir.sub("store"), create: true)
        do {
            _ = try Packer(store: store, datasetID: "x", key: try SecureBytes.random(count: 32)).pack(source: dir.sub("src"))
            Issue.record("packed a FIFO")
        } catch DatasetError.source(let m) {
            #expect(m.contains("pipe") && m.contains("FIFO"))
        }
        #expect(try store.listAll(prefix: "").isEmpty)
    }

    @Test("packing into a full store fails cleanly and leaves no partial objects")
    func fullStore() throws {
        let dir = TempDir()
        let disk = try Tmpfs(size: "512k")
        var rng = SeededGenerator(seed: 4)
        try writeFile(dir.sub("src/big.bin"), rng.bytes(2 << 20))
        let store = try FileObjectStore(root: disk.path)
        do {
            _ = try Packer(store: store, datasetID: "x", key: try SecureBytes.random(count: 32)).pack(source: dir.sub("src"))
            Issue.record("2 MiB fit in 512 KiB")
        } catch let e as ObjectStoreError {
            #expect(e.code == .noSpace)
        }
        #expect(try store.listAll(prefix: "").isEmpty, "a failed pack leaves no objects")
    }
}

/// A store that records opens and sequential-read hints, around a real file:// store.
final class RecordingStore: ForwardingObjectStore, @unchecked Sendable {
    private let lock = NSLock()
    private var log: [String] = []

    var events: [String] { lock.lock(); defer { lock.unlock() }; return log }
    func reset() { lock.lock(); log.removeAll(); lock.unlock() }
    func record(_ e: String) { lock.lock(); log.append(e); lock.unlock() }

    struct Reader: ObjectReader {
        let inner: any ObjectReader
        let store: RecordingStore
        var key: ObjectKey { inner.key }
        var size: Int64 { inner.size }
        var etag: String { inner.etag }
        func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int { try inner.read(at: offset, into: buffer) }
        func willReadSequentially(from offset: Int64) { store.record("ahead " + key.rawValue) }
    }

    override func openReader(_ key: ObjectKey) throws(ObjectStoreError) -> any ObjectReader {
        record("open " + key.rawValue)
        return Reader(inner: try inner.openReader(key), store: self)
    }
}
