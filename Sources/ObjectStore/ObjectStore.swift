// The chunk layer's interface: objects in a store, addressed by opaque keys.
import Foundation
import Synchronization

/// A validated object key: 1...1024 bytes of [A-Za-z0-9/._-], relative, with no empty,
/// "." or ".." components. Keys are opaque to the store; cce4 never puts names in them.
public struct ObjectKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: String

    public init(_ raw: String) throws(ObjectStoreError) {
        // One pass over the bytes, no copies (every file open builds keys).
        let n = raw.utf8.count
        guard n > 0, n <= 1024 else { throw ObjectStoreError(.invalidKey, key: raw, "object key length must be 1...1024") }
        // The current component: its length, whether it is all dots so far, and whether it
        // starts with the reserved ".cce4-".
        var length = 0, dots = true, reserved = true
        let prefix: StaticString = ".cce4-"
        var bad = false
        for c in raw.utf8 {
            let ok = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c == 0x2f || c == 0x2d || c == 0x5f || c == 0x2e
            guard ok else { throw ObjectStoreError(.invalidKey, key: raw, "object key may only use A-Z a-z 0-9 / . _ -") }
            if c == 0x2f {
                if length == 0 || (dots && length <= 2) || (reserved && length >= 6) { bad = true }
                length = 0; dots = true; reserved = true
                continue
            }
            if c != 0x2e { dots = false }
            if length < 6 && c != prefix.utf8Start[length] { reserved = false }
            length += 1
        }
        if length == 0 || (dots && length <= 2) || (reserved && length >= 6) { bad = true }
        guard !bad else { throw ObjectStoreError(.invalidKey, key: raw, "object key has an empty, '.', '..' or reserved component") }
        rawValue = raw
    }

    /// `self` followed by "/" and `child`.
    public func appending(_ child: String) throws(ObjectStoreError) -> ObjectKey { try ObjectKey(rawValue + "/" + child) }

    public var description: String { rawValue }
    public static func < (a: ObjectKey, b: ObjectKey) -> Bool { Array(a.rawValue.utf8).lexicographicallyPrecedes(Array(b.rawValue.utf8)) }
}

/// Metadata of one object.
public struct ObjectInfo: Sendable, Equatable {
    public let key: ObjectKey
    public let size: Int64
    /// An opaque version tag: it changes whenever the object is replaced.
    public let etag: String
    public let modified: Date
}

/// One page of a listing.
public struct ObjectListPage: Sendable {
    public let objects: [ObjectInfo]
    /// Pass as `startAfter` to get the next page; nil when this is the last page.
    public let nextStartAfter: ObjectKey?
}

/// The result of a ranged read.
public struct ReadResult: Sendable, Equatable {
    /// Bytes written to the buffer (short only at the object's end).
    public let count: Int
    /// The object's total size, as the store reports it alongside the data.
    public let objectSize: Int64
    public let etag: String
}

/// A store error: a closed set of codes the upper layers map to errnos, plus the object
/// key and the cause. Never carries object contents.
public struct ObjectStoreError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable, Equatable {
        case notFound = "not found"
        case alreadyExists = "already exists"
        case preconditionFailed = "precondition failed"
        case invalidKey = "invalid key"
        case invalidURL = "invalid store URL"
        case permissionDenied = "permission denied"
        /// The store refused the credentials (a wrong key or secret, an expired token).
        case authentication = "authentication failed"
        case noSpace = "no space left"
        case io = "I/O error"
    }
    public let code: Code
    public let key: String?
    public let detail: String
    /// The underlying errno, where there is one.
    public let errno: Int32?

    public init(_ code: Code, key: String?, _ detail: String, errno: Int32? = nil) {
        self.code = code; self.key = key; self.detail = detail; self.errno = errno
    }

    public var description: String {
        var s = code.rawValue
        if let key { s += " (object \(key))" }
        if !detail.isEmpty { s += ": " + detail }
        return s
    }
}

/// Streams bytes into a new object, which appears atomically at `commit`.
public protocol ObjectWriter: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws(ObjectStoreError)
    /// Makes the object visible under its key, durably. With `ifAbsent`, fails with
    /// `.alreadyExists` (and changes nothing) when an object is already there.
    func commit() throws(ObjectStoreError) -> ObjectInfo
    /// Discards everything written; the key is left as it was.
    func abort()
}

/// Reads one version of one object: opened once, read many times, by many threads. For
/// `file://` it holds the file open, so reads cost one pread and an object replaced
/// meanwhile is never mixed in (the old version stays readable until the reader is released).
public protocol ObjectReader: Sendable {
    var key: ObjectKey { get }
    var size: Int64 { get }
    var etag: String { get }
    /// Reads up to `buffer.count` bytes at `offset`; short only at the end of the object.
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int
    /// A hint: the caller is reading sequentially and will read from `offset` on next (the
    /// next part of a file it is streaming). A reader that prefetches starts now, with its
    /// largest window; others ignore it. Never blocks, never fails.
    func willReadSequentially(from offset: Int64)
}

extension ObjectReader {
    public func willReadSequentially(from offset: Int64) {}
}

/// An object store. Calls block the calling thread (FUSE workers call them directly).
public protocol ObjectStore: Sendable {
    /// Opens one version of an object for repeated reads.
    func openReader(_ key: ObjectKey) throws(ObjectStoreError) -> any ObjectReader
    /// The URL the store was opened from, for messages.
    var url: String { get }
    /// Reads up to `buffer.count` bytes at `offset`. With `ifMatch`, fails with
    /// `.preconditionFailed` if the object's etag differs.
    func read(_ key: ObjectKey, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer, ifMatch: String?) throws(ObjectStoreError) -> ReadResult
    func head(_ key: ObjectKey) throws(ObjectStoreError) -> ObjectInfo
    /// Starts a new object. With `ifAbsent`, `commit` refuses to replace an existing one.
    func makeWriter(_ key: ObjectKey, ifAbsent: Bool) throws(ObjectStoreError) -> ObjectWriter
    /// Keys under `prefix` in ascending bytewise order, after `startAfter`, at most `maxKeys`.
    func list(prefix: String, startAfter: ObjectKey?, maxKeys: Int) throws(ObjectStoreError) -> ObjectListPage
    /// Removes an object. Removing a missing object succeeds (as in S3).
    func delete(_ key: ObjectKey) throws(ObjectStoreError)
    /// A hint: these objects (with the sizes the caller expects) are likely to be read soon,
    /// whole. A store that can fetch ahead starts now (`file://`: the kernel reads them into
    /// its page cache); others ignore it. Blocks the caller only while the requests are
    /// issued; never fails (a missing or odd object is skipped and left for the read that
    /// needs it to report). Returns how many objects it started to fetch.
    @discardableResult
    func warm(_ objects: [(key: ObjectKey, size: Int64)]) -> Int
}

/// The generic reader: a ranged read per call, pinned to the version first seen (If-Match),
/// so a replaced object gives `.preconditionFailed` rather than a mix of versions.
public struct PinnedReader: ObjectReader {
    public let store: any ObjectStore
    public let key: ObjectKey
    public let size: Int64
    public let etag: String

    public init(store: any ObjectStore, key: ObjectKey) throws(ObjectStoreError) {
        let info = try store.head(key)
        guard info.size >= 0 else { throw ObjectStoreError(.io, key: key.rawValue, "store reported a negative size") }
        self.store = store; self.key = key; self.size = info.size; self.etag = info.etag
    }

    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int {
        let r = try store.read(key, at: offset, into: buffer, ifMatch: etag)
        guard (0...buffer.count).contains(r.count) else { throw ObjectStoreError(.io, key: key.rawValue, "store reported an impossible read") }
        return r.count
    }
}

extension ObjectStore {
    @discardableResult
    public func warm(_ objects: [(key: ObjectKey, size: Int64)]) -> Int { 0 }

    public func openReader(_ key: ObjectKey) throws(ObjectStoreError) -> any ObjectReader { try PinnedReader(store: self, key: key) }

    /// Reads `range` (or the whole object) into a new array; short only if the object is shorter.
    public func get(_ key: ObjectKey, range: Range<Int64>? = nil) throws(ObjectStoreError) -> (bytes: [UInt8], objectSize: Int64) {
        if let range {
            var buf = [UInt8](repeating: 0, count: range.count)
            var result = ReadResult(count: 0, objectSize: 0, etag: "")
            var failure: ObjectStoreError?
            buf.withUnsafeMutableBytes { b in
                do throws(ObjectStoreError) { result = try read(key, at: range.lowerBound, into: b, ifMatch: nil) } catch { failure = error }
            }
            if let failure { throw failure }
            guard (0...buf.count).contains(result.count), result.objectSize >= 0 else {
                throw ObjectStoreError(.io, key: key.rawValue, "store reported an impossible read (\(result.count) bytes of \(buf.count), object size \(result.objectSize))")
            }
            buf.removeSubrange(result.count...)
            return (buf, result.objectSize)
        }
        // Through a reader pinned to one version: an object replaced meanwhile is read whole
        // (file://: the open file) or refused (If-Match), never torn.
        let reader = try openReader(key)
        guard reader.size >= 0 else { throw ObjectStoreError(.io, key: key.rawValue, "store reported a negative size") }
        var buf = [UInt8](repeating: 0, count: Int(reader.size))
        var failure: ObjectStoreError?
        var count = 0
        buf.withUnsafeMutableBytes { b in
            do throws(ObjectStoreError) { count = try reader.read(at: 0, into: b) } catch { failure = error }
        }
        if let failure { throw failure }
        guard count == buf.count else { throw ObjectStoreError(.io, key: key.rawValue, "object ended early: \(count) of \(buf.count) bytes") }
        return (buf, reader.size)
    }

    /// Writes a whole object.
    @discardableResult
    public func put(_ key: ObjectKey, _ bytes: [UInt8], ifAbsent: Bool = false) throws(ObjectStoreError) -> ObjectInfo {
        let w = try makeWriter(key, ifAbsent: ifAbsent)
        var failure: ObjectStoreError?
        bytes.withUnsafeBytes { b in do throws(ObjectStoreError) { try w.write(b) } catch { failure = error } }
        if let failure { w.abort(); throw failure }
        return try w.commit()
    }

    /// Every key under `prefix`, page by page.
    public func listAll(prefix: String) throws(ObjectStoreError) -> [ObjectInfo] {
        var out = [ObjectInfo]()
        var after: ObjectKey? = nil
        repeat {
            let page = try list(prefix: prefix, startAfter: after, maxKeys: 1000)
            out += page.objects
            after = page.nextStartAfter
        } while after != nil
        return out
    }
}

/// Opens a store from its URL.
public enum ObjectStores {
    /// `file://DIR` (an absolute or relative path after the scheme). With `create`, the
    /// directory is made if missing; otherwise a missing directory is an error.
    /// `s3://BUCKET[/PREFIX]`, configured by `s3` and the AWS_* variables in `environment`
    /// (see `S3Config.resolve`); the bucket must exist (`create` does not make one).
    public static func open(url: String, create: Bool = false, s3: S3Options = S3Options(), fileReadahead: Int64 = FileObjectStore.defaultReadahead,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws(ObjectStoreError) -> any ObjectStore {
        if url.hasPrefix("file://") {
            let path = String(url.dropFirst("file://".count))
            guard !path.isEmpty else { throw ObjectStoreError(.invalidURL, key: nil, "file:// needs a directory, as in file:///srv/cce4-store") }
            return try FileObjectStore(root: path, create: create, readahead: fileReadahead)
        }
        if url.hasPrefix("s3://") {
            return try S3ObjectStore(config: try S3Config.resolve(url: url, options: s3, environment: environment))
        }
        throw ObjectStoreError(.invalidURL, key: nil, "'\(url)' is not a store URL; use file://DIR or s3://BUCKET/PREFIX")
    }
}

/// Runs `body(i)` for each `i` in `0..<count`, each index once, on up to `lanes` threads of
/// their own; a lane stops early when `body` returns false. Returns when every lane has
/// stopped. Threads, not the global dispatch queues: the callers (directory prefetch, `warm`)
/// block on I/O, may themselves run on a queue's thread, and wait here.
public func runOnLanes(_ count: Int, lanes: Int, _ body: @escaping @Sendable (Int) -> Bool) {
    let next = Atomic<Int>(0)
    let group = DispatchGroup()
    for _ in 0..<min(max(1, lanes), count) {
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            while true {
                let i = next.add(1, ordering: .relaxed).oldValue
                guard i < count, body(i) else { return }
            }
        }
    }
    group.wait()
}
