// DatasetFS driven directly, without FUSE: the semantics the bridge relies on.
import Dataset
import Envelope
import Filesystem
import Foundation
import ObjectStore
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

final class FSFixture: @unchecked Sendable {
    let dir = TempDir("cce4-fs")
    let fs: DatasetFS
    let files: [String: [UInt8]]

    init(options: FSOptions = FSOptions()) throws {
        var rng = SeededGenerator(seed: 21)
        var files = [String: [UInt8]]()
        for i in 0..<30 { files["d\(i % 3)/f\(i).bin"] = rng.bytes(i * 1000) }
        files["top.txt"] = Array("top".utf8)
        for (p, b) in files { try writeFile(dir.sub("src/" + p), b) }
        try FileManager.default.createSymbolicLink(atPath: dir.sub("src/ln"), withDestinationPath: "top.txt")
        let store = try FileObjectStore(root: dir.sub("store"), create: true)
        let key = try SecureBytes.random(count: 32)
        let root = try Packer(store: store, datasetID: "fs", key: key).pack(source: dir.sub("src")).root
        fs = try DatasetFS(reader: DatasetReader(store: store, datasetID: "fs", root: root, key: key), options: options)
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
