// file://DIR: any POSIX directory (local disk, NFS, a JuiceFS mount) as an object store.
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Objects are files under `root`, one per key ("a/b/c" → root/a/b/c). New objects are
/// written to `root/.cce4-tmp/`, fsynced, then renamed into place (or linked, for
/// create-if-absent), and the parent directory is fsynced: a reader sees the old object
/// or the whole new one, never a torn write, and a crash leaves at most a temp file.
public final class FileObjectStore: ObjectStore {
    public let url: String
    /// The absolute directory path.
    public let root: String
    static let tempDir = ".cce4-tmp"
    /// How far ahead of a sequential stream of large reads (≥ 256 KiB) of one object the
    /// kernel is asked to read (`POSIX_FADV_WILLNEED`, topped up each time half of it has been
    /// read); 0 leaves it to the kernel's own readahead.
    public let readahead: Int64
    public static let defaultReadahead: Int64 = 64 << 20

    public init(root path: String, create: Bool = false, readahead: Int64 = FileObjectStore.defaultReadahead) throws(ObjectStoreError) {
        self.readahead = max(0, readahead)
        var abs = path
        if !abs.hasPrefix("/") {
            abs = FileManager.default.currentDirectoryPath + "/" + abs
        }
        while abs.count > 1 && abs.hasSuffix("/") { abs.removeLast() }
        root = abs
        url = "file://" + abs
        var st = stat()
        if stat(abs, &st) != 0 {
            let e = errno
            guard e == ENOENT, create else {
                throw Self.error(e, key: nil, "store directory \(abs) cannot be used" + (e == ENOENT ? " (it does not exist; check the store URL)" : ""))
            }
            try Self.makeDirectories(abs)
        } else if st.st_mode & S_IFMT != S_IFDIR {
            throw ObjectStoreError(.invalidURL, key: nil, "store path \(abs) is not a directory")
        }
    }

    static func error(_ e: Int32, key: String?, _ what: String) -> ObjectStoreError {
        let text = String(cString: strerror(e))
        switch e {
        case ENOENT, ENOTDIR: return ObjectStoreError(.notFound, key: key, "\(what): \(text)", errno: e)
        case EACCES, EPERM, EROFS: return ObjectStoreError(.permissionDenied, key: key, "\(what): \(text)", errno: e)
        case ENOSPC, EDQUOT: return ObjectStoreError(.noSpace, key: key, "\(what): \(text)", errno: e)
        case EEXIST: return ObjectStoreError(.alreadyExists, key: key, "\(what): \(text)", errno: e)
        default: return ObjectStoreError(.io, key: key, "\(what): \(text)", errno: e)
        }
    }

    static func makeDirectories(_ path: String) throws(ObjectStoreError) {
        var current = path.hasPrefix("/") ? "" : "."
        for comp in path.split(separator: "/") {
            current += "/" + comp
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw error(errno, key: nil, "cannot create directory \(current)")
            }
        }
    }

    func path(_ key: ObjectKey) -> String { root + "/" + key.rawValue }

    static func etag(_ st: stat) -> String {
        "\(String(UInt64(st.st_ino), radix: 16))-\(String(UInt64(st.st_size), radix: 16))-\(String(st.st_mtim.tv_sec, radix: 16)).\(String(st.st_mtim.tv_nsec, radix: 16))"
    }

    static func info(_ key: ObjectKey, _ st: stat) -> ObjectInfo {
        ObjectInfo(key: key, size: Int64(st.st_size), etag: etag(st),
                   modified: Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9))
    }

    /// One ranged read: the object opened as a `FileObjectReader`, read once, closed.
    public func read(_ key: ObjectKey, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer, ifMatch: String?) throws(ObjectStoreError) -> ReadResult {
        let reader = try FileObjectReader(path: path(key), key: key, readahead: 0)
        if let ifMatch, ifMatch != reader.etag {
            throw ObjectStoreError(.preconditionFailed, key: key.rawValue, "object changed since it was opened")
        }
        let count = try reader.read(at: offset, into: buffer)
        return ReadResult(count: count, objectSize: reader.size, etag: reader.etag)
    }

    public func openReader(_ key: ObjectKey) throws(ObjectStoreError) -> any ObjectReader {
        try FileObjectReader(path: path(key), key: key, readahead: readahead)
    }

    public func head(_ key: ObjectKey) throws(ObjectStoreError) -> ObjectInfo {
        var st = stat()
        guard stat(path(key), &st) == 0 else { throw Self.error(errno, key: key.rawValue, "stat") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw ObjectStoreError(.notFound, key: key.rawValue, "not a regular file") }
        return Self.info(key, st)
    }

    public func makeWriter(_ key: ObjectKey, ifAbsent: Bool) throws(ObjectStoreError) -> ObjectWriter {
        try FileObjectWriter(store: self, key: key, ifAbsent: ifAbsent)
    }

    /// Each object is opened (which reads its inode), checked to be a regular file of the
    /// expected size, and handed to the kernel's readahead (`POSIX_FADV_WILLNEED`: the reads are
    /// queued, not waited for), then closed. No bytes enter this process.
    @discardableResult
    public func warm(_ objects: [(key: ObjectKey, size: Int64)]) -> Int {
        var started = 0
        for (key, size) in objects {
            let fd = open(path(key), O_RDONLY | O_CLOEXEC | O_NONBLOCK)
            guard fd >= 0 else { continue }
            var st = stat()
            if fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, Int64(st.st_size) == size,
               posix_fadvise(fd, 0, off_t(size), POSIX_FADV_WILLNEED) == 0 {
                started += 1
            }
            close(fd)
        }
        return started
    }

    public func delete(_ key: ObjectKey) throws(ObjectStoreError) {
        if unlink(path(key)) != 0 && errno != ENOENT {
            throw Self.error(errno, key: key.rawValue, "delete")
        }
    }

    public func list(prefix: String, startAfter: ObjectKey?, maxKeys: Int) throws(ObjectStoreError) -> ObjectListPage {
        // Walk only the deepest directory the prefix names, without stat (d_type), then
        // stat just the page that is returned.
        let dirPart = prefix.contains("/") ? String(prefix[..<prefix.lastIndex(of: "/")!]) : ""
        var keys = [String]()
        try walk(dirPart, into: &keys)
        let pfx = Array(prefix.utf8)
        var selected = keys.filter { Array($0.utf8).starts(with: pfx) }
        selected.sort { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        if let after = startAfter {
            let a = Array(after.rawValue.utf8)
            selected.removeAll { !a.lexicographicallyPrecedes(Array($0.utf8)) }
        }
        let limit = max(1, maxKeys)
        let page = selected.prefix(limit)
        var objects = [ObjectInfo]()
        for k in page {
            guard let key = try? ObjectKey(k) else { continue }
            var st = stat()
            if stat(path(key), &st) == 0 && st.st_mode & S_IFMT == S_IFREG { objects.append(Self.info(key, st)) }
        }
        let next = selected.count > limit ? objects.last?.key : nil
        return ObjectListPage(objects: objects, nextStartAfter: next)
    }

    private func walk(_ rel: String, into keys: inout [String]) throws(ObjectStoreError) {
        let full = rel.isEmpty ? root : root + "/" + rel
        guard let dir = opendir(full) else {
            if errno == ENOENT || errno == ENOTDIR { return }
            throw Self.error(errno, key: nil, "list \(full)")
        }
        defer { closedir(dir) }
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) { p in
                p.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." || name.hasPrefix(".cce4-") { continue }
            let child = rel.isEmpty ? name : rel + "/" + name
            var type = ent.pointee.d_type
            if type == UInt8(DT_UNKNOWN) {
                var st = stat()
                if lstat(root + "/" + child, &st) == 0 {
                    type = st.st_mode & S_IFMT == S_IFDIR ? UInt8(DT_DIR) : (st.st_mode & S_IFMT == S_IFREG ? UInt8(DT_REG) : 0)
                }
            }
            if type == UInt8(DT_DIR) { try walk(child, into: &keys) } else if type == UInt8(DT_REG) { keys.append(child) }
        }
    }
}

/// An open object file: reads are one pread each, from any thread.
final class FileObjectReader: ObjectReader {
    let key: ObjectKey
    let size: Int64
    let etag: String
    private let fd: Int32
    /// Sequential streams: where the last large read ended (nil before the first), and where
    /// the window handed to the kernel's readahead ends.
    private let stream = Mutex<(end: Int64?, ahead: Int64)>((nil, 0))
    private let aheadWindow: Int64
    static let hintChunk: Int64 = 4 << 20

    init(path: String, key: ObjectKey, readahead: Int64) throws(ObjectStoreError) {
        self.key = key
        aheadWindow = readahead
        // O_NONBLOCK: a FIFO planted in a shared store directory must not hang the reader
        // before the regular-file check below (it has no effect on regular files).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FileObjectStore.error(errno, key: key.rawValue, "open") }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw ObjectStoreError(.notFound, key: key.rawValue, "not a regular file")
        }
        self.fd = fd
        size = Int64(st.st_size)
        etag = FileObjectStore.etag(st)
    }

    deinit { close(fd) }

    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int {
        guard offset >= 0 else { throw ObjectStoreError(.io, key: key.rawValue, "negative offset") }
        // pread(2) until the buffer is full or the file ends; EINTR is retried.
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileObjectStore.error(errno, key: key.rawValue, "read")
            }
            if n == 0 { break }
            done += n
        }
        if aheadWindow > 0, done >= 256 << 10 { readAhead(offset, done) }
        return done
    }

    /// A large read that continues the last one (within 4 MiB: concurrent FUSE workers deliver a
    /// stream slightly out of order) keeps the window ahead of it in the kernel's readahead,
    /// `aheadWindow` deep, topped up each time half of it has been read. Any other read starts
    /// a new stream there (a second pass from the start, after a read of the footer).
    private func readAhead(_ offset: Int64, _ count: Int) {
        let end = offset + Int64(count), window = aheadWindow
        let hint: Range<Int64>? = stream.withLock { s in
            guard let last = s.end, abs(offset - last) <= 4 << 20 else {
                s.end = end; s.ahead = end
                return nil
            }
            s.end = max(last, end)
            guard end + window / 2 > s.ahead, end < size else { return nil }
            let from = max(s.ahead, end), to = min(size, end + window)
            s.ahead = to
            return from < to ? from..<to : nil
        }
        guard let hint else { return }
        // In chunks: the kernel caps one WILLNEED at the device's readahead size (ra_pages).
        var at = hint.lowerBound
        while at < hint.upperBound {
            let n = min(Self.hintChunk, hint.upperBound - at)
            _ = posix_fadvise(fd, off_t(at), off_t(n), POSIX_FADV_WILLNEED)
            at += n
        }
    }
}

/// A temp file that becomes the object on commit.
final class FileObjectWriter: ObjectWriter {
    let store: FileObjectStore
    let key: ObjectKey
    let ifAbsent: Bool
    let tempPath: String
    var fd: Int32
    var finished = false

    init(store: FileObjectStore, key: ObjectKey, ifAbsent: Bool) throws(ObjectStoreError) {
        self.store = store; self.key = key; self.ifAbsent = ifAbsent
        let tmpDir = store.root + "/" + FileObjectStore.tempDir
        if mkdir(tmpDir, 0o700) != 0 && errno != EEXIST { throw FileObjectStore.error(errno, key: key.rawValue, "cannot create \(tmpDir)") }
        var rnd = [UInt8](repeating: 0, count: 12)
        var gen = SystemRandomNumberGenerator()
        for i in rnd.indices { rnd[i] = UInt8.random(in: 0...255, using: &gen) }
        tempPath = tmpDir + "/" + rnd.map { String(format: "%02x", $0) }.joined()
        fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileObjectStore.error(errno, key: key.rawValue, "cannot create temp file") }
    }

    deinit { if !finished { abort() } }

    func write(_ bytes: UnsafeRawBufferPointer) throws(ObjectStoreError) {
        precondition(!finished, "write after commit or abort")
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                abort()
                throw FileObjectStore.error(e, key: key.rawValue, "write")
            }
            done += n
        }
    }

    func commit() throws(ObjectStoreError) -> ObjectInfo {
        precondition(!finished, "commit after commit or abort")
        let final = store.path(key)
        if fsync(fd) != 0 { let e = errno; abort(); throw FileObjectStore.error(e, key: key.rawValue, "fsync") }
        close(fd); fd = -1
        let parent = String(final[..<final.lastIndex(of: "/")!])
        do { try FileObjectStore.makeDirectories(parent) } catch { abort(); throw error }
        if ifAbsent {
            // link(2) fails with EEXIST instead of replacing: create-if-absent, atomically.
            if link(tempPath, final) != 0 { let e = errno; abort(); throw FileObjectStore.error(e, key: key.rawValue, "create") }
            unlink(tempPath)
        } else if rename(tempPath, final) != 0 {
            let e = errno; abort(); throw FileObjectStore.error(e, key: key.rawValue, "rename into place")
        }
        finished = true
        let dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
        return try store.head(key)
    }

    func abort() {
        if fd >= 0 { close(fd); fd = -1 }
        if !finished { unlink(tempPath) }
        finished = true
    }
}
