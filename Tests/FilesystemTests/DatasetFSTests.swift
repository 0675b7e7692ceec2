// DatasetFS driven directly, without FUSE: the semantics the bridge relies on.
import Dataset
import Envelope
import Filesystem
import Foundation
import ObjectStore
import TestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

final class FSFixture: @unchecked Sendable {
    let dir = TempDir("cce4-fs")
    let fs: DatasetFS
    let files: [String: [UInt8]]

    init(options: FSOptions = FSOptions(), gate: LeaseGate? = nil, wrap: ((any ObjectStore) -> any ObjectStore)? = nil) throws {
        var rng = SeededGenerator(seed: 21)
        var files = [String: [UInt8]]()
        for i in 0..<30 { files["d\(i % 3)/f\(i).bin"] = rng.bytes(i * 1000) }
        files["top.txt"] = Array("top".utf8)
        for (p, b) in files { try writeFile(dir.sub("src/" + p), b) }
        try FileManager.default.createSymbolicLink(atPath: dir.sub("src/ln"), withDestinationPath: "top.txt")
        let store = try FileObjectStore(root: dir.sub("store"), create: true)
        let key = try SecureBytes.random(count: 32)
        let root = try Packer(store: store, datasetID: "fs", key: key).pack(source: dir.sub("src")).root
        fs = try DatasetFS(reader: DatasetReader(store: wrap?(store) ?? store, datasetID: "fs", root: root, key: key), options: options, gate: gate)
        self.files = files
    }

    func names(_ ino: UInt64, plus: Bool = false) throws -> [String] {
        var out = [String]()
        try fs.readdir(ino, offset: 0, plus: plus) { out.append(String(decoding: $0.name, as: UTF8.self)); return true }
        return out
    }
}

@Suite("DatasetFS semantics (no FUSE)")
struct DatasetFSTests {
    @Test("lookup, getattr, readdir with offsets, open and read")
    func basics() throws {
        let fx = try FSFixture()
        let fs = fx.fs
        #expect(try fx.names(DatasetFS.rootIno) == [".", "..", "d0", "d1", "d2", "ln", "top.txt"])
        let d1 = try fs.lookup(parent: DatasetFS.rootIno, name: Array("d1".utf8))
        #expect(d1.isDirectory && d1.nlink == 2 && d1.size == 10)
        // Resuming from every offset yields the rest, in order, exactly once.
        let all = try fx.names(d1.ino)
        for off in 0...all.count {
            var rest = [String]()
            try fs.readdir(d1.ino, offset: off, plus: false) { rest.append(String(decoding: $0.name, as: UTF8.self)); return true }
            #expect(rest == Array(all[off...]))
        }
        // A full reply buffer stops the listing without skipping an entry.
        var first = [String](), next = 0
        try fs.readdir(d1.ino, offset: 0, plus: false) { item in
            guard first.count < 4 else { return false }
            first.append(String(decoding: item.name, as: UTF8.self)); next = item.nextOffset; return true
        }
        var second = [String]()
        try fs.readdir(d1.ino, offset: next, plus: false) { second.append(String(decoding: $0.name, as: UTF8.self)); return true }
        #expect(first + second == all)
        let f = try fs.lookup(parent: d1.ino, name: Array("f10.bin".utf8))
        #expect(f.size == 10_000 && f.mode == UInt32(S_IFREG) | 0o644)
        #expect(try fs.getattr(f.ino) == f)
        let h = try fs.open(f.ino, flags: O_RDONLY)
        var buf = [UInt8](repeating: 0, count: 20_000)
        let n = try buf.withUnsafeMutableBytes { try fs.read(h, offset: 0, into: $0) }
        #expect(n == 10_000 && Array(buf[0..<n]) == fx.files["d1/f10.bin"])
        #expect(try buf.withUnsafeMutableBytes { try fs.read(h, offset: 10_000, into: $0) } == 0)
        let ln = try fs.lookup(parent: DatasetFS.rootIno, name: Array("ln".utf8))
        #expect(try fs.readlink(ln.ino) == Array("top.txt".utf8))
    }

    @Test("inode numbers are stable across mounts of one version and unique within it")
    func stableInodes() throws {
        let fx = try FSFixture()
        let fs2 = try DatasetFS(reader: fx.fs.reader)
        var seen = Set<UInt64>()
        for d in ["d0", "d1", "d2"] {
            let a = try fx.fs.lookup(parent: DatasetFS.rootIno, name: Array(d.utf8))
            let b = try fs2.lookup(parent: DatasetFS.rootIno, name: Array(d.utf8))
            #expect(a.ino == b.ino)
            #expect(seen.insert(a.ino).inserted)
            try fx.fs.readdir(a.ino, offset: 2, plus: true) { item in
                #expect(seen.insert(item.attributes.ino).inserted)
                return true
            }
        }
    }

    @Test("forget drops inodes the kernel no longer references; readdirplus counts lookups")
    func forget() throws {
        let fx = try FSFixture()
        let fs = fx.fs
        let before = fs.inodeCount
        let d0 = try fs.lookup(parent: DatasetFS.rootIno, name: Array("d0".utf8))
        _ = try fs.lookup(parent: DatasetFS.rootIno, name: Array("d0".utf8))
        #expect(fs.inodeCount == before + 1)
        _ = try fx.names(d0.ino, plus: true)
        #expect(fs.inodeCount == before + 11)
        fs.forget(d0.ino, count: 1)
        #expect(try fs.getattr(d0.ino).ino == d0.ino)
        fs.forget(d0.ino, count: 1)
        #expect(throws: FSError.self) { try fs.getattr(d0.ino) }
        fs.forget(DatasetFS.rootIno, count: 100)
        #expect(try fs.getattr(DatasetFS.rootIno).isDirectory, "the root is never forgotten")
    }

    @Test("errnos: ENOENT, ENOTDIR, EISDIR, EROFS, ENAMETOOLONG, ESTALE")
    func errnos() throws {
        let fx = try FSFixture()
        let fs = fx.fs
        func errno(_ body: () throws -> Void) -> Int32 {
            do { try body(); return 0 } catch let e as FSError { return e.errno } catch { return -1 }
        }
        let top = try fs.lookup(parent: DatasetFS.rootIno, name: Array("top.txt".utf8))
        #expect(errno { _ = try fs.lookup(parent: DatasetFS.rootIno, name: Array("nope".utf8)) } == ENOENT)
        #expect(errno { _ = try fs.lookup(parent: top.ino, name: Array("x".utf8)) } == ENOTDIR)
        #expect(errno { _ = try fs.open(DatasetFS.rootIno, flags: O_RDONLY) } == EISDIR)
        #expect(errno { _ = try fs.open(top.ino, flags: O_WRONLY) } == EROFS)
        #expect(errno { _ = try fs.open(top.ino, flags: O_RDONLY | O_TRUNC) } == EROFS)
        #expect(errno { try fs.access(top.ino, mask: W_OK) } == EROFS)
        #expect(errno { _ = try fs.lookup(parent: DatasetFS.rootIno, name: Array(repeating: 0x61, count: 256)) } == ENAMETOOLONG)
        #expect(errno { _ = try fs.getattr(987_654_321) } == ESTALE)
    }

    @Test("uid, gid and umask options shape every attribute")
    func ownership() throws {
        var o = FSOptions()
        o.uid = 1234; o.gid = 99; o.umask = 0o077
        let fx = try FSFixture(options: o)
        let a = try fx.fs.lookup(parent: DatasetFS.rootIno, name: Array("top.txt".utf8))
        #expect(a.uid == 1234 && a.gid == 99 && a.mode & 0o777 == 0o600)
        #expect(try fx.fs.getattr(DatasetFS.rootIno).mode & 0o777 == 0o700)
    }
}

@Suite("Directory cache budget")
struct DirectoryCacheTests {
    @Test("listings beyond the budget are evicted and re-verified on the next access")
    func budget() throws {
        let dir = TempDir("cce4-cache")
        for d in 0..<20 { for f in 0..<50 { try writeFile(dir.sub("src/dir\(d)/file_with_a_long_name_\(f).bin"), [UInt8(f)]) } }
        let store = try FileObjectStore(root: dir.sub("store"), create: true)
        let key = try SecureBytes.random(count: 32)
        let root = try Packer(store: store, datasetID: "c", key: key).pack(source: dir.sub("src")).root
        // A budget of about three listings.
        let reader = try DatasetReader(store: store, datasetID: "c", root: root, key: key, directoryCacheBytes: 3 * 10_000)
        let fs = try DatasetFS(reader: reader)
        for round in 0..<2 {
            for d in 0..<20 {
                let a = try fs.lookup(parent: DatasetFS.rootIno, name: Array("dir\(d)".utf8))
                let f = try fs.lookup(parent: a.ino, name: Array("file_with_a_long_name_7.bin".utf8))
                #expect(f.size == 1, "round \(round) dir \(d)")
                let usage = reader.directoryCacheUsage
                #expect(usage.bytes <= 3 * 10_000 || usage.listings <= 2, "cache holds \(usage.bytes) bytes in \(usage.listings) listings")
            }
        }
        #expect(reader.directoryCacheUsage.listings < 21, "evictions happened")
    }
}

/// A store that records the `warm` hints it is given.
final class WarmRecorder: ForwardingObjectStore, @unchecked Sendable {
    let warmed = Mutex<[[(key: ObjectKey, size: Int64)]]>([])
    /// Called on each `warm`, before it is recorded.
    let onWarm: @Sendable () -> Void
    init(_ inner: any ObjectStore, onWarm: @escaping @Sendable () -> Void = {}) { self.onWarm = onWarm; super.init(inner) }
    var keys: [String] { warmed.withLock { $0.flatMap { $0.map(\.key.rawValue) } } }
    override func warm(_ objects: [(key: ObjectKey, size: Int64)]) -> Int {
        onWarm()
        warmed.withLock { $0.append(objects) }
        return inner.warm(objects)
    }
}

@Suite("Directory prefetch (no FUSE)")
struct PrefetchTests {
    /// A fixture with these prefetch settings whose reader's store records warm hints.
    static func recorded(bytes: Int64 = 1 << 30, after: Int, fileMax: Int64 = 1 << 20, batch: Int = 128, lanes: Int = 2, gate: LeaseGate? = nil,
                         onWarm: @escaping @Sendable () -> Void = {}) throws -> (FSFixture, WarmRecorder) {
        var o = FSOptions()
        o.prefetch.bytes = bytes; o.prefetch.after = after; o.prefetch.fileMax = fileMax; o.prefetch.batch = batch; o.prefetch.lanes = lanes
        let made = Mutex<WarmRecorder?>(nil)
        let fx = try FSFixture(options: o, gate: gate, wrap: { s in let r = WarmRecorder(s, onWarm: onWarm); made.withLock { $0 = r }; return r })
        return (fx, try #require(made.withLock { $0 }))
    }

    /// A directory's files (d0: f0, f3 … f27, 0 to 27,000 bytes) in directory order, with their objects.
    static func objects(_ fx: FSFixture, _ dir: String) throws -> [(name: String, ino: UInt64, key: String, size: Int64)] {
        let fs = fx.fs
        let d = try fs.lookup(parent: DatasetFS.rootIno, name: Array(dir.utf8)).ino
        return try fx.names(d).filter { $0.hasSuffix(".bin") }.map { name in
            let a = try fs.lookup(parent: d, name: Array(name.utf8))
            guard case .entry(let e, _) = try fs.reader.resolve(dir + "/" + name), case .file(let f) = e.target else { throw FSError(EIO, "not a file") }
            let part = f.parts[0]
            return (name, a.ino, try fs.reader.layout.storeKey(part.key).rawValue, part.size)
        }
    }

    @Test("the 3rd distinct file opened in a directory starts one prefetch of its other small files' objects, in directory order, within the byte budget; repeats and other directories count apart")
    func threshold() throws {
        let (fx, rec) = try Self.recorded(after: 3, fileMax: 20_000)
        let fs = fx.fs
        let d0 = try Self.objects(fx, "d0"), d1 = try Self.objects(fx, "d1")
        // The same file three times, and a second one: two distinct files, nothing yet.
        for ino in [d0[0].ino, d0[0].ino, d0[0].ino, d0[1].ino] { _ = try fs.open(ino, flags: O_RDONLY) }
        // Two files of d1: counted for d1 only.
        for f in d1.prefix(2) { _ = try fs.open(f.ino, flags: O_RDONLY) }
        usleep(100_000)
        #expect(rec.keys.isEmpty && fs.prefetchStatistics.scans == 0)
        _ = try fs.open(d0[2].ino, flags: O_RDONLY)
        #expect(eventually { fs.prefetchStatistics.scans == 1 })
        // The opened three are left out.
        let small = d0.dropFirst(3).filter { $0.size <= 20_000 }
        #expect(small.count > 1 && small.count < d0.count - 3)
        #expect(rec.keys == small.map(\.key))
        #expect(fs.prefetchStatistics.objects == small.count && fs.prefetchStatistics.bytes == small.reduce(0) { $0 + $1.size })
        // More opens in d0 start nothing more; d1's third file starts d1's.
        for f in d0.suffix(4) { _ = try fs.open(f.ino, flags: O_RDONLY) }
        _ = try fs.open(d1[2].ino, flags: O_RDONLY)
        #expect(eventually { fs.prefetchStatistics.scans == 2 })
        usleep(100_000)
        #expect(rec.warmed.withLock { $0.count } == 2)
        let small1 = d1.dropFirst(3).filter { $0.size <= 20_000 }
        #expect(Array(rec.keys.suffix(small1.count)) == small1.map(\.key))

        // A budget: the directory's first objects whose sizes fit in it.
        let (fb, recB) = try Self.recorded(bytes: 20_000, after: 3, fileMax: 20_000)
        let b0 = try Self.objects(fb, "d0")
        for f in b0.prefix(3) { _ = try fb.fs.open(f.ino, flags: O_RDONLY) }
        #expect(eventually { fb.fs.prefetchStatistics.scans == 1 })
        var budget: Int64 = 0
        let expected = b0.dropFirst(3).filter { $0.size <= 20_000 }.filter { f in
            guard budget + f.size <= 20_000 else { return false }
            budget += f.size
            return true
        }
        #expect(!expected.isEmpty && recB.keys == expected.map(\.key))
    }

    @Test("prefetch=0 warms nothing; a lapsed lease stops a prefetch at its next batch")
    func offAndLease() throws {
        let (f0, r0) = try Self.recorded(bytes: 0, after: 1)
        for f in try Self.objects(f0, "d0") { _ = try f0.fs.open(f.ino, flags: O_RDONLY) }
        usleep(200_000)
        #expect(r0.keys.isEmpty && f0.fs.prefetchStatistics.scans == 0)

        // Batches of one object, one lane: the lease lapses during the first batch, so the
        // prefetch ends after it.
        let gate = LeaseGate(expiresAt: UInt64.max / 2000, keys: [])
        let (fl, rl) = try Self.recorded(after: 1, batch: 1, lanes: 1, gate: gate, onWarm: { gate.lapse("test") })
        let l0 = try Self.objects(fl, "d0")
        _ = try fl.fs.open(l0[0].ino, flags: O_RDONLY)
        #expect(eventually { fl.fs.prefetchStatistics.scans == 1 })
        #expect(rl.keys.count == 1)
        #expect(throws: FSError.self) { _ = try fl.fs.open(l0[1].ino, flags: O_RDONLY) }
    }
}
