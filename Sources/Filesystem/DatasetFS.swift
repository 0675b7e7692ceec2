// The read-only filesystem over one dataset version: namespace, inodes, handles, reads.
// No FUSE here: tests drive this type directly; FuseBridge maps requests onto it.
import Dataset
import Envelope
import Foundation
import ObjectStore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Mount-wide settings.
public struct FSOptions: Sendable {
    /// Owner and group reported for every inode.
    public var uid: UInt32 = getuid()
    public var gid: UInt32 = getgid()
    /// Bits cleared from every mode (octal, as in `-o umask=022`).
    public var umask: UInt16 = 0o022
    /// How long the kernel may cache names and attributes: the snapshot is immutable.
    public var entryTimeout: Double = 86_400
    public var attrTimeout: Double = 86_400
    /// Directory prefetch (`-o prefetch=`): see `PrefetchOptions`.
    public var prefetch = PrefetchOptions()
    public init() {}
}

/// The attributes of an inode, as stat(2) reports them.
public struct Attributes: Sendable, Equatable {
    public var ino: UInt64
    public var mode: UInt32          // type and permission bits
    public var nlink: UInt32
    public var size: Int64
    public var uid: UInt32
    public var gid: UInt32
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: UInt32
    public var blockSize: Int32 = 128 << 10

    public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
}

/// One inode: the entry it names (nil for the root, which has none), the directory it was
/// found in, and how often the kernel has looked it up.
struct Inode {
    let entry: DirectoryEntry?
    var parent: SHA256Digest?
    var lookups: UInt64
}

/// A child as readdir reports it.
public struct DirectoryItem: Sendable {
    public let name: [UInt8]
    public let attributes: Attributes
    /// The offset to pass to continue after this item.
    public let nextOffset: Int
}

/// The filesystem. Thread-safe; FUSE worker threads call it concurrently.
///
/// Inode numbers are stable across mounts of the same version: a directory's is taken from
/// its hash, a file's from its random object key, a symlink's from its parent and name;
/// the root is 1.
///
/// Locks: `inodes` is sharded 64 ways by inode number; a shard lock is held only to read
/// or update a table entry, never across I/O, decryption or another shard's lock. The read
/// path (`read`) takes no lock of this type at all.
public final class DatasetFS: Sendable {
    public static let rootIno: UInt64 = 1
    public let reader: DatasetReader
    public let options: FSOptions
    /// One lock-protected slice of the inode table.
    final class Shard: Sendable { let table = Mutex<[UInt64: Inode]>([:]) }
    private let shards: [Shard]
    /// The root's attributes, computed once (the version never changes).
    private let rootAttrs: Mutex<Attributes?> = Mutex(nil)
    /// The lease every lookup, open, opendir, readdir and read checks first (nil: a local key
    /// file, no lease).
    public let gate: LeaseGate?
    /// The per-job log of opens (nil: not kept).
    public let accessLog: AccessLog?
    /// Directory prefetch (nil: off).
    let prefetcher: DirectoryPrefetcher?

    /// Fails fast, with the library's error (a `DatasetError`), unless the root opens: the
    /// right key, the right root hash, an intact object.
    public init(reader: DatasetReader, options: FSOptions = FSOptions(), gate: LeaseGate? = nil, accessLog: AccessLog? = nil) throws {
        self.reader = reader
        self.options = options
        self.gate = gate
        self.accessLog = accessLog
        prefetcher = options.prefetch.bytes > 0 ? DirectoryPrefetcher(options: options.prefetch) : nil
        shards = (0..<64).map { _ in Shard() }
        shards[Int(Self.rootIno % 64)].table.withLock { $0[Self.rootIno] = Inode(entry: nil, parent: nil, lookups: 1) }
        _ = try reader.rootDirectory()
    }

    private func shard(_ ino: UInt64) -> Shard { shards[Int(ino % 64)] }

    private func inode(_ ino: UInt64) throws(FSError) -> Inode {
        guard let i = shard(ino).table.withLock({ $0[ino] }) else { throw FSError(ESTALE, "unknown inode \(ino)") }
        return i
    }

    // MARK: identity

    static func number(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var v: UInt64 = 0
        for b in bytes.prefix(8) { v = v << 8 | UInt64(b) }
        return valid(v)
    }

    /// 0 is invalid and 1 is the root: move those two away.
    static func valid(_ v: UInt64) -> UInt64 { v < 2 ? v + 2 : v }

    func ino(for entry: DirectoryEntry, parentHash: SHA256Digest) -> UInt64 {
        switch entry.target {
        case .directory(let d): return Self.number(d.hash.bytes)
        case .file(let f):
            // The last 16 hex digits of the random object key, read in place (no allocation).
            var v: UInt64 = 0, digits = 0
            for c in f.objectKey.utf8.reversed() {
                guard digits < 16, let n = Hex.nibble(c) else { break }
                v |= UInt64(n) << (4 * UInt64(digits))
                digits += 1
            }
            return digits == 16 ? Self.valid(v) : Self.number(SHA256Digest.hash(Array(f.objectKey.utf8)).bytes)
        case .symlink: return Self.number(SHA256Digest.hash(parentHash.bytes + [0] + entry.name).bytes)
        }
    }

    /// A directory inode's hash and decoded listing (size-checked against its parent's entry).
    private func directory(_ ino: UInt64) throws(FSError) -> (SHA256Digest, DirectoryListing) {
        do {
            switch try inode(ino).entry?.target {
            case nil: return (reader.root, try reader.rootDirectory())
            case .directory(let d)?: return (d.hash, try reader.directory(d))
            default: throw FSError(ENOTDIR, "inode \(ino) is not a directory")
            }
        } catch let e as FSError {
            throw e
        } catch {
            throw FSError.from(error)
        }
    }

    // MARK: attributes

    func attributes(ino: UInt64, entry: DirectoryEntry) -> Attributes {
        var perm = UInt32(entry.mode & ~options.umask & 0o7777)
        let type: UInt32, nlink: UInt32
        switch entry.target {
        case .file: type = UInt32(S_IFREG); nlink = 1
        case .directory(let d): type = UInt32(S_IFDIR); nlink = 2 + d.subdirectoryCount
        case .symlink: type = UInt32(S_IFLNK); nlink = 1; perm = 0o777  // as on Linux: a link's own mode is unused
        }
        return Attributes(ino: ino, mode: type | perm, nlink: nlink, size: entry.size, uid: options.uid, gid: options.gid,
                          mtimeSeconds: entry.mtimeSeconds, mtimeNanoseconds: entry.mtimeNanoseconds)
    }

    func rootAttributes() throws(FSError) -> Attributes {
        if let a = rootAttrs.withLock({ $0 }) { return a }
        let (_, l) = try directory(Self.rootIno)
        // The root has no entry of its own: its mtime is its newest child's.
        var best: (Int64, UInt32) = (0, 0)
        var subdirs: UInt32 = 0
        for i in 0..<l.count {
            guard let e = try? l.entry(at: i) else { continue }
            if (e.mtimeSeconds, e.mtimeNanoseconds) > best { best = (e.mtimeSeconds, e.mtimeNanoseconds) }
            if e.kind == .directory { subdirs += 1 }
        }
        let a = Attributes(ino: Self.rootIno, mode: UInt32(S_IFDIR) | UInt32(0o755 & ~options.umask), nlink: 2 + subdirs,
                           size: Int64(l.count), uid: options.uid, gid: options.gid, mtimeSeconds: best.0, mtimeNanoseconds: best.1)
        rootAttrs.withLock { $0 = a }
        return a
    }

    // MARK: operations

    /// lookup: a child by name; counts one kernel reference to the returned inode.
    public func lookup(parent: UInt64, name: [UInt8]) throws(FSError) -> Attributes {
        try gate?.check()
        guard name.count <= DirectoryLimits.maxNameLength else { throw FSError(ENAMETOOLONG, "name longer than 255 bytes") }
        let (hash, l) = try directory(parent)
        let found: DirectoryEntry?
        do { found = try l.lookup(name) } catch { throw FSError(EIO, "directory \(reader.objectKey(ofDirectory: hash)): \(error)") }
        guard let entry = found else { throw FSError(ENOENT, "no such entry") }
        let ino = ino(for: entry, parentHash: hash)
        try record(entry, as: ino, in: hash)
        return attributes(ino: ino, entry: entry)
    }

    /// Records an inode for `entry` of directory `parent` under `ino` (or bumps its count):
    /// one kernel reference.
    func record(_ entry: DirectoryEntry, as ino: UInt64, in parent: SHA256Digest) throws(FSError) {
        let clash = shard(ino).table.withLock { table -> Bool in
            if var existing = table[ino] {
                guard existing.entry?.target == entry.target else { return true }
                existing.lookups += 1
                table[ino] = existing
            } else {
                table[ino] = Inode(entry: entry, parent: parent, lookups: 1)
            }
            return false
        }
        // Two different objects with one inode number (2^-64 per pair): refuse rather than mix them up.
        if clash { throw FSError(EIO, "inode number collision at \(ino)") }
    }

    /// forget: the kernel dropped `count` references.
    public func forget(_ ino: UInt64, count: UInt64) {
        guard ino != Self.rootIno else { return }
        shard(ino).table.withLock { table in
            guard var i = table[ino] else { return }
            if i.lookups <= count { table[ino] = nil } else { i.lookups -= count; table[ino] = i }
        }
    }

    public func getattr(_ ino: UInt64) throws(FSError) -> Attributes {
        if ino == Self.rootIno { return try rootAttributes() }
        let i = try inode(ino)
        guard let e = i.entry else { throw FSError(EIO, "inode \(ino) has no entry") }
        return attributes(ino: ino, entry: e)
    }

    /// readdir: items from `offset` ("." is offset 0, ".." 1, then the children). `plus`
    /// records each child as looked up (readdirplus); `accept` returns false when the
    /// reply buffer is full, and that item is not counted.
    public func readdir(_ ino: UInt64, offset: Int, plus: Bool, accept: (DirectoryItem) -> Bool) throws(FSError) {
        try gate?.check()
        let (hash, l) = try directory(ino)
        var off = max(0, offset)
        if off < 2 {
            // "." and "..": this directory's own attributes (the kernel resolves ".." itself).
            let selfAttr = try getattr(ino)
            while off < 2 {
                guard accept(DirectoryItem(name: off == 0 ? [0x2e] : [0x2e, 0x2e], attributes: selfAttr, nextOffset: off + 1)) else { return }
                off += 1
            }
        }
        while off < l.count + 2 {
            let e: DirectoryEntry
            do { e = try l.entry(at: off - 2) } catch { throw FSError(EIO, "directory \(reader.objectKey(ofDirectory: hash)): \(error)") }
            let child = self.ino(for: e, parentHash: hash)
            guard accept(DirectoryItem(name: e.name, attributes: attributes(ino: child, entry: e), nextOffset: off + 1)) else { return }
            if plus { try record(e, as: child, in: hash) }
            off += 1
        }
    }

    /// open: read-only; fetches and checks the file's header. The returned file is the
    /// handle: reads through it take no filesystem-wide lock.
    public func open(_ ino: UInt64, flags: Int32) throws(FSError) -> DatasetFile {
        try gate?.check()
        if flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0 { throw FSError(EROFS, "dataset is read-only") }
        let node = try inode(ino)
        switch node.entry?.target {
        case .file(let f)?:
            let file: DatasetFile
            do { file = try reader.open(f) } catch { throw FSError.from(error) }
            accessLog?.opened(file, fileID: f.fileID)
            if let prefetcher, let parent = node.parent { prefetcher.opened(ino, in: parent, fs: self) }
            return file
        case nil, .directory?: throw FSError(EISDIR, "is a directory")
        case .symlink?: throw FSError(ELOOP, "is a symlink")
        }
    }

    /// opendir: checks the inode is a directory and that its object opens.
    public func opendir(_ ino: UInt64, flags: Int32) throws(FSError) {
        try gate?.check()
        if flags & O_ACCMODE != O_RDONLY { throw FSError(EROFS, "dataset is read-only") }
        _ = try directory(ino)
    }

    /// read: decrypts straight into `buffer`; returns the bytes written (0 at the end). The
    /// access log counts them as served unless `accounted` is false (then `served` does,
    /// once they have left the process).
    public func read(_ file: DatasetFile, offset: Int64, into buffer: UnsafeMutableRawBufferPointer, accounted: Bool = true,
                     scratch: ((Int) -> UnsafeMutableRawBufferPointer)? = nil) throws(FSError) -> Int {
        try gate?.check()
        guard offset >= 0 else { throw FSError(EINVAL, "negative offset") }
        let end = offset.addingReportingOverflow(Int64(buffer.count))
        guard !end.overflow else { throw FSError(EINVAL, "offset overflow") }
        let n: Int
        do { n = try file.read(offset..<end.partialValue, into: buffer, scratch: scratch) } catch { throw FSError.from(error) }
        if accounted { served(file, bytes: n) }
        return n
    }

    /// Counts `bytes` of `file` as served (sent to the kernel) in the access log.
    public func served(_ file: DatasetFile, bytes n: Int) {
        if accessLog != nil, n > 0 { file.bytesServed.add(UInt64(n), ordering: .relaxed) }
    }

    /// release: the kernel closed the handle (ends its access-log entry).
    public func release(_ file: DatasetFile) { accessLog?.closed(file) }

    public func readlink(_ ino: UInt64) throws(FSError) -> [UInt8] {
        guard case .symlink(let t)? = try inode(ino).entry?.target else { throw FSError(EINVAL, "not a symlink") }
        return t
    }

    /// access: the permission bits decide reads and searches; writing is never allowed.
    public func access(_ ino: UInt64, mask: Int32) throws(FSError) {
        if mask & W_OK != 0 { throw FSError(EROFS, "dataset is read-only") }
        _ = try getattr(ino)
    }

    /// The inode numbers the kernel holds references to (the root included).
    public func knownInodes() -> [UInt64] { shards.flatMap { s in s.table.withLock { Array($0.keys) } } }

    /// Directory prefetch so far: scans finished, objects and bytes handed to the store.
    public var prefetchStatistics: (scans: Int, objects: Int, bytes: Int64) { prefetcher?.statistics ?? (0, 0, 0) }

    /// Stops starting prefetch work (at unmount); work in flight ends at its next batch.
    public func stopPrefetch() { prefetcher?.stop() }

    /// Inodes the kernel currently holds references to (for tests and statfs).
    public var inodeCount: Int { shards.reduce(0) { n, s in n + s.table.withLock { $0.count } } }
}
