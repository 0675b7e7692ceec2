// Packs a source directory into encrypted objects in a store.
import Dispatch
import Envelope
import Foundation
import ObjectStore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Progress of a pack, reported from worker threads.
public struct PackProgress: Sendable {
    public var filesDone: Int
    public var filesTotal: Int
    public var bytesDone: Int64
    public var bytesTotal: Int64
}

/// The outcome of a pack.
public struct PackResult: Sendable {
    public let root: SHA256Digest
    public let files: Int
    public let directories: Int
    public let symlinks: Int
    public let plaintextBytes: Int64
    public let ciphertextBytes: Int64
}

/// Options of `Packer`.
public struct PackOptions: Sendable {
    public var parameters: StreamParameters = .default
    /// Store files larger than this as parts of this many ciphertext bytes (a multiple of
    /// the segment size); nil stores every file as one object.
    public var partSize: Int64? = nil
    /// Files encrypted in parallel.
    public var concurrency: Int = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))
    /// Tests only: derive every random value (file ids, object keys, stream salts and
    /// nonce prefixes) from this seed and the path, so two packs of one tree produce the
    /// same objects. Never in production: it reuses nonces across versions.
    package var deterministicSeed: [UInt8]? = nil
    public init() {}
}

/// Encrypts every file and directory of a source tree into a store and returns the
/// root hash. Regular files, directories and symlinks only; anything else is refused
/// before a single object is written. Objects are written once and never rewritten.
public final class Packer: Sendable {
    let store: any ObjectStore
    let layout: DatasetLayout
    let key: SecureBytes
    let options: PackOptions

    public init(store: any ObjectStore, datasetID: String, key: SecureBytes, options: PackOptions = PackOptions()) throws {
        if let ps = options.partSize {
            guard ps > 0, ps <= DirectoryLimits.maxPartSize, ps % Int64(options.parameters.segmentSize) == 0 else {
                throw DatasetError.invalidArgument("part size \(ps) must be a positive multiple of the segment size \(options.parameters.segmentSize), at most 1 TiB")
            }
        }
        self.store = store
        self.layout = try DatasetLayout(datasetID: datasetID)
        self.key = key
        self.options = options
    }

    // MARK: the tree

    /// A node of the tree being packed: names, sizes and metadata only, never content.
    final class Node: Sendable {
        enum Kind: Sendable { case file(size: Int64), directory([Node]), symlink([UInt8]) }
        let name: [UInt8]
        /// Where the content is read from (a path on disk); empty for a tar entry.
        let path: [UInt8]
        /// The path inside the dataset ("a/b/c"), empty for the root.
        let rel: [UInt8]
        let kind: Kind
        let mode: UInt16
        let mtimeSeconds: Int64
        let mtimeNanoseconds: UInt32
        init(name: [UInt8], path: [UInt8], rel: [UInt8], kind: Kind, mode: UInt16, mtimeSeconds: Int64, mtimeNanoseconds: UInt32) {
            self.name = name; self.path = path; self.rel = rel; self.kind = kind; self.mode = mode
            self.mtimeSeconds = mtimeSeconds; self.mtimeNanoseconds = mtimeNanoseconds
        }
    }

    static func display(_ path: [UInt8]) -> String { String(decoding: path, as: UTF8.self) }

    static func withCPath<R>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try (path + [0]).withUnsafeBufferPointer { try $0.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) } }
    }

    static func join(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { a.isEmpty ? b : a + [0x2f] + b }

    func scan(path: [UInt8], name: [UInt8], rel: [UInt8]) throws -> Node {
        var st = stat()
        guard Self.withCPath(path, { lstat($0, &st) }) == 0 else {
            throw DatasetError.source("cannot read \(Self.display(path)): \(String(cString: strerror(errno)))")
        }
        let mode = UInt16(st.st_mode & 0o7777)
        let sec = Int64(st.st_mtim.tv_sec), nsec = UInt32(st.st_mtim.tv_nsec)
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            return Node(name: name, path: path, rel: rel, kind: .file(size: Int64(st.st_size)), mode: mode, mtimeSeconds: sec, mtimeNanoseconds: nsec)
        case S_IFLNK:
            var buf = [UInt8](repeating: 0, count: DirectoryLimits.maxSymlinkTarget + 1)
            let n = Self.withCPath(path) { p in buf.withUnsafeMutableBufferPointer { readlink(p, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count) } }
            guard n > 0, n <= DirectoryLimits.maxSymlinkTarget else {
                throw DatasetError.source("cannot pack symlink \(Self.display(path)): target unreadable or longer than \(DirectoryLimits.maxSymlinkTarget) bytes")
            }
            return Node(name: name, path: path, rel: rel, kind: .symlink(Array(buf[0..<n])), mode: mode, mtimeSeconds: sec, mtimeNanoseconds: nsec)
        case S_IFDIR:
            guard let dir = Self.withCPath(path, { opendir($0) }) else {
                throw DatasetError.source("cannot list \(Self.display(path)): \(String(cString: strerror(errno)))")
            }
            var names = [[UInt8]]()
            while let ent = readdir(dir) {
                let n = withUnsafeBytes(of: ent.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
                if n == [0x2e] || n == [0x2e, 0x2e] { continue }
                names.append(n)
            }
            closedir(dir)
            names.sort { $0.lexicographicallyPrecedes($1) }
            var children = [Node]()
            for n in names {
                do { try validateEntryName(n) } catch {
                    throw DatasetError.source("cannot pack \(Self.display(path + [0x2f] + n)): name longer than \(DirectoryLimits.maxNameLength) bytes")
                }
                children.append(try scan(path: path + [0x2f] + n, name: n, rel: Self.join(rel, n)))
            }
            return Node(name: name, path: path, rel: rel, kind: .directory(children), mode: mode, mtimeSeconds: sec, mtimeNanoseconds: nsec)
        default:
            let what: String
            switch st.st_mode & S_IFMT {
            case S_IFIFO: what = "a FIFO"
            case S_IFSOCK: what = "a socket"
            case S_IFCHR: what = "a character device"
            case S_IFBLK: what = "a block device"
            default: what = "an unsupported file type"
            }
            throw DatasetError.source("cannot pack \(Self.display(path)): it is \(what); only regular files, directories and symlinks can be packed (remove it or pack a copy without it)")
        }
    }

    // MARK: packing a directory

    /// Packs `source` and returns the new version's root hash.
    public func pack(source: String, progress: (@Sendable (PackProgress) -> Void)? = nil) throws -> PackResult {
        var src = Array(source.utf8)
        while src.count > 1 && src.last == 0x2f { src.removeLast() }
        let rootNode = try scan(path: src, name: [], rel: [])
        guard case .directory = rootNode.kind else { throw DatasetError.source("\(source) is not a directory") }

        var files = [Node]()
        Self.collectFiles(rootNode, into: &files)
        let total = files.reduce(Int64(0)) { if case .file(let s) = $1.kind { return $0 + s } else { return $0 } }
        let jobs = FileJobs(packer: self, progress: progress, filesTotal: files.count, bytesTotal: total)
        do {
            for f in files {
                try jobs.start(f) { write in try Self.feed(path: f.path, write: write) }
            }
        } catch {
            jobs.fail(error)
        }
        return try finishPack(rootNode, jobs: jobs)
    }

    /// Reads a file from disk in 1 MiB chunks into `write`.
    static func feed(path: [UInt8], write: (UnsafeRawBufferPointer) throws -> Void) throws {
        let fd = withCPath(path) { open($0, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        guard fd >= 0 else { throw DatasetError.source("cannot read \(display(path)): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        defer { secureWipe(&buf) }
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw DatasetError.source("cannot read \(display(path)): \(String(cString: strerror(errno)))")
            }
            if n == 0 { return }
            do {
                try buf.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            } catch is SizeChanged {
                throw DatasetError.source("\(display(path)) changed size while it was being packed; pack a stable copy")
            }
        }
    }

    static func collectFiles(_ n: Node, into files: inout [Node]) {
        switch n.kind {
        case .file: files.append(n)
        case .directory(let c): for child in c { collectFiles(child, into: &files) }
        case .symlink: break
        }
    }

    // MARK: packing a tar stream

    /// Packs a tar archive read from `tar` (see docs/tar.md) and returns the new version's
    /// root hash: the same objects and root as `pack(source:)` of the tree it holds.
    ///
    /// One pass: the tree is kept in memory as names, sizes and metadata; file contents
    /// stream through the encryptors in chunks of 256 KiB, at most `concurrency` files at
    /// a time with a few chunks queued for each, so memory stays bounded whatever the
    /// archive's size. Plaintext never touches disk. Progress totals are what has been
    /// read so far (an archive's size is not known in advance). On any error (a
    /// `TarError`, the source's, the store's) every file object written is removed.
    public func pack(tar: any ByteSource, limits: TarLimits = TarLimits(), progress: (@Sendable (PackProgress) -> Void)? = nil) throws -> PackResult {
        let reader = TarReader(tar, limits: limits)
        let root = TreeBuilder(name: [], rel: [])
        let jobs = FileJobs(packer: self, progress: progress, filesTotal: 0, bytesTotal: 0)
        do {
            while let e = try reader.next() {
                guard let node = try root.insert(e) else { continue }
                guard case .file(let size) = e.kind else { continue }
                jobs.announce(size: size)
                let channel = ChunkChannel(capacity: 4, meter: chunkMeter)
                try jobs.start(node, onFailure: { channel.cancel() }) { write in
                    while let chunk = try channel.take() {
                        defer { channel.release(chunk) }
                        try chunk.withUnsafeBytes { try write($0) }
                    }
                }
                do {
                    var remaining = size
                    while remaining > 0 {
                        var chunk = [UInt8](repeating: 0, count: Int(min(remaining, Int64(Self.chunkSize))))
                        var filled = 0
                        while filled < chunk.count {
                            let n = try chunk.withUnsafeMutableBytes { try reader.readContent(into: UnsafeMutableRawBufferPointer(rebasing: $0[filled...])) }
                            guard n > 0 else { throw TarError(.truncated, offset: reader.offset, "entry \(e.index): the archive ends inside the file's content") }
                            filled += n
                        }
                        remaining -= Int64(filled)
                        guard channel.put(chunk) else { secureWipe(&chunk); break }  // the job failed: its error is reported below
                    }
                } catch {
                    jobs.fail(error)  // first, so the job's "content too short" does not mask it
                    channel.cancel()
                    throw error
                }
                channel.close()
            }
        } catch {
            jobs.fail(error)
        }
        return try finishPack(root.build(), jobs: jobs)
    }

    static let chunkSize = 256 << 10
    /// Plaintext bytes queued between the tar reader and the encryptors (tests read its peak).
    package let chunkMeter = ChunkMeter()

    // MARK: shared

    /// Waits for the file jobs, seals the directories, writes the version marker.
    private func finishPack(_ rootNode: Node, jobs: FileJobs) throws -> PackResult {
        do {
            let refs = try jobs.wait()
            var counts = SealCounts()
            counts.ciphertextBytes = refs.values.reduce(0) { $0 + $1.ciphertextSize }
            let (root, _, _, _) = try seal(rootNode, refs: refs, counts: &counts)
            let total = refs.values.reduce(Int64(0)) { $0 + $1.size }
            let result = PackResult(root: root, files: refs.count, directories: counts.directories, symlinks: counts.symlinks,
                                    plaintextBytes: total, ciphertextBytes: counts.ciphertextBytes)
            try writeVersionMarker(result)
            return result
        } catch {
            // No version names them: the file objects go (directory objects are content-addressed
            // and harmless; a later pack of the same tree writes them again).
            jobs.discard()
            throw error
        }
    }

    struct SealCounts { var directories = 0, symlinks = 0; var ciphertextBytes: Int64 = 0 }

    /// `n` bytes for `purpose` of the node at `rel`: random, or derived from the
    /// deterministic test seed (so two packs of one tree give identical objects).
    func randomness(_ purpose: String, _ rel: [UInt8], _ n: Int) throws -> [UInt8] {
        guard let seed = options.deterministicSeed else { return try Random.bytes(n) }
        precondition(n <= 32)
        return Array(SHA256Digest.hash(seed + Array(purpose.utf8) + [0] + rel).bytes.prefix(n))
    }

    func header(_ purpose: String, _ rel: [UInt8]) throws -> StreamHeader? {
        guard options.deterministicSeed != nil else { return nil }
        return try StreamHeader(salt: randomness(purpose + "/salt", rel, StreamParameters.saltLength),
                                noncePrefix: randomness(purpose + "/nonce", rel, StreamParameters.noncePrefixLength))
    }

    /// Seals a directory after its subdirectories (post-order): a parent needs each
    /// child's hash. Returns the hash, entry count and subdirectory count.
    private func seal(_ n: Node, refs: [ObjectIdentifier: FileRef], counts: inout SealCounts) throws -> (SHA256Digest, Int64, UInt32, UInt32) {
        guard case .directory(let children) = n.kind else { throw DatasetError.invalidArgument("internal: seal of a non-directory") }
        var entries = [DirectoryEntry]()
        var subdirs: UInt32 = 0
        for c in children {
            let target: DirectoryEntry.Target
            switch c.kind {
            case .file:
                guard let ref = refs[ObjectIdentifier(c)] else { throw DatasetError.invalidArgument("internal: file was not encrypted") }
                target = .file(ref)
            case .symlink(let t):
                target = .symlink(t)
                counts.symlinks += 1
            case .directory:
                let (h, size, count, sub) = try seal(c, refs: refs, counts: &counts)
                target = .directory(DirectoryRef(hash: h, objectSize: size, entryCount: count, subdirectoryCount: sub))
                subdirs += 1
            }
            entries.append(DirectoryEntry(name: c.name, mode: c.mode, mtimeSeconds: c.mtimeSeconds,
                                          mtimeNanoseconds: c.mtimeNanoseconds, target: target))
        }
        let (object, hash) = try DirectoryObject.seal(entries, datasetID: layout.datasetID, key: key, parameters: options.parameters,
                                                      header: header("dir", n.rel))
        try store.put(layout.directoryKey(hash), object)
        counts.directories += 1
        counts.ciphertextBytes += Int64(object.count)
        return (hash, Int64(object.count), UInt32(entries.count), subdirs)
    }

    private func writeVersionMarker(_ r: PackResult) throws {
        let created = ISO8601DateFormatter().string(from: Date())
        let json = """
        {"format":1,"dataset":"\(layout.datasetID)","root":"\(r.root.hex)","created":"\(created)","files":\(r.files),"directories":\(r.directories),"symlinks":\(r.symlinks),"plaintext_bytes":\(r.plaintextBytes),"ciphertext_bytes":\(r.ciphertextBytes)}

        """
        do {
            try store.put(layout.versionKey(r.root), Array(json.utf8), ifAbsent: true)
        } catch let e {
            if e.code != .alreadyExists { throw e }
        }
    }

    /// Encrypts one file, streaming: `feed` hands its content to `write` in chunks of any
    /// size; memory use is one segment. A file whose content is not exactly `size` bytes
    /// is refused (`SizeChanged` from `write`, or `.source` at the end).
    func encryptFile(_ node: Node, progress: @escaping (Int64) -> Void, feed: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> FileRef {
        guard case .file(let expectedSize) = node.kind else { throw DatasetError.invalidArgument("internal: encryptFile of a non-file") }
        let fileID = try randomness("fileid", node.rel, DirectoryLimits.fileIDLength)
        let objectKey = DatasetLayout.relativeKey(for: try randomness("key", node.rel, 32))
        let params = options.parameters
        let ctSize = params.ciphertextSize(plaintextSize: expectedSize)
        let partSize = options.partSize.flatMap { ctSize > $0 ? $0 : nil }
        let sink = PartSink(store: store, layout: layout, objectKey: objectKey, partSize: partSize)
        let enc = try StreamEncryptor(key: key, associatedData: AssociatedData.file(datasetID: layout.datasetID, fileID: fileID),
                                      parameters: params, header: header("file", node.rel))
        do {
            let writer = try StreamWriter(encryptor: enc) { try sink.write($0) }
            try feed { chunk in
                guard writer.plaintextWritten + Int64(chunk.count) <= expectedSize else { throw SizeChanged() }
                try writer.write(chunk)
                progress(Int64(chunk.count))
            }
            guard writer.plaintextWritten == expectedSize else {
                throw node.path.isEmpty ? DatasetError.source("a file's content is shorter than its size")
                    : DatasetError.source("\(Self.display(node.path)) changed size while it was being packed; pack a stable copy")
            }
            try writer.finish()
            try sink.commit()
        } catch {
            sink.abort()
            throw error
        }
        return FileRef(size: expectedSize, segmentSize: params.segmentSize, fileID: fileID, objectKey: objectKey,
                       layout: partSize.map { .parts(partSize: $0) } ?? .single)
    }
}

/// A file delivered more bytes than its size.
struct SizeChanged: Error {}

/// The other side of a `ChunkChannel` gave up (its own error is the one reported).
struct Cancelled: Error {}

/// The file jobs of one pack: at most `concurrency` run at a time on Dispatch's global
/// queue; `start` blocks while all slots are busy.
final class FileJobs: @unchecked Sendable {
    struct State { var done = 0, filesTotal = 0; var bytes: Int64 = 0, bytesTotal: Int64 = 0; var refs: [ObjectIdentifier: FileRef] = [:]; var error: (any Error)? = nil }
    // Lock order: `state` alone; never held across I/O or crypto.
    let state: Mutex<State>
    let slots: DispatchSemaphore
    let group = DispatchGroup()
    let packer: Packer
    let progress: (@Sendable (PackProgress) -> Void)?

    init(packer: Packer, progress: (@Sendable (PackProgress) -> Void)?, filesTotal: Int, bytesTotal: Int64) {
        self.packer = packer
        self.progress = progress
        self.slots = DispatchSemaphore(value: max(1, packer.options.concurrency))
        self.state = Mutex(State(filesTotal: filesTotal, bytesTotal: bytesTotal))
    }

    /// A tar entry announced a file: the totals grow as the archive is read.
    func announce(size: Int64) { state.withLock { $0.filesTotal += 1; $0.bytesTotal += size } }

    private func snapshot(_ s: State) -> PackProgress {
        PackProgress(filesDone: s.done, filesTotal: s.filesTotal, bytesDone: s.bytes, bytesTotal: s.bytesTotal)
    }

    /// Runs the encryption of `node` as a job; `feed` runs on the job's thread. Throws the
    /// first job error, if any, before starting another.
    func start(_ node: Packer.Node, onFailure: (@Sendable () -> Void)? = nil,
               feed: @escaping @Sendable ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        slots.wait()
        if let e = state.withLock({ $0.error }) { slots.signal(); throw e }
        let id = ObjectIdentifier(node)
        DispatchQueue.global().async(group: group) { [self] in
            defer { slots.signal() }
            do {
                let ref = try packer.encryptFile(node, progress: { [self] n in
                    let p = self.state.withLock { s -> PackProgress in s.bytes += n; return self.snapshot(s) }
                    self.progress?(p)
                }, feed: feed)
                let p = state.withLock { s -> PackProgress in s.refs[id] = ref; s.done += 1; return snapshot(s) }
                progress?(p)
            } catch {
                fail(error)
                onFailure?()
            }
        }
    }

    /// Records the first error; later ones are dropped.
    func fail(_ error: any Error) { state.withLock { s in if s.error == nil { s.error = error } } }

    /// Waits for every job; throws the first error.
    func wait() throws -> [ObjectIdentifier: FileRef] {
        group.wait()
        let (refs, error) = state.withLock { ($0.refs, $0.error) }
        if let error { throw error }
        return refs
    }

    /// Removes the objects of every finished file (after a failure).
    func discard() {
        let refs = state.withLock { $0.refs.values }
        for r in refs {
            for p in r.parts { if let k = try? packer.layout.storeKey(p.key) { try? packer.store.delete(k) } }
        }
    }
}

/// Counts plaintext bytes queued between the tar reader and the encryptors, and the peak.
package final class ChunkMeter: Sendable {
    private let state = Mutex<(now: Int, peak: Int)>((0, 0))
    func add(_ n: Int) { state.withLock { $0.now += n; $0.peak = max($0.peak, $0.now) } }
    func remove(_ n: Int) { state.withLock { $0.now -= n } }
    /// The most bytes ever queued at once.
    package var peak: Int { state.withLock { $0.peak } }
}

/// A bounded queue of plaintext chunks from the tar reader to one file's job.
final class ChunkChannel: @unchecked Sendable {
    private let cond = NSCondition()
    private var chunks = [[UInt8]]()
    private var closed = false, cancelled = false
    private let capacity: Int
    private let meter: ChunkMeter

    init(capacity: Int, meter: ChunkMeter) { self.capacity = capacity; self.meter = meter }

    /// Queues a chunk, waiting while the queue is full; false when the consumer has gone.
    func put(_ chunk: [UInt8]) -> Bool {
        cond.lock(); defer { cond.unlock() }
        while chunks.count >= capacity && !cancelled { cond.wait() }
        guard !cancelled else { return false }
        meter.add(chunk.count)
        chunks.append(chunk)
        cond.broadcast()
        return true
    }

    /// No more chunks.
    func close() { cond.lock(); closed = true; cond.broadcast(); cond.unlock() }

    /// The next chunk; nil once closed and empty; throws once cancelled.
    func take() throws -> [UInt8]? {
        cond.lock(); defer { cond.unlock() }
        while chunks.isEmpty && !closed && !cancelled { cond.wait() }
        if cancelled { throw Cancelled() }
        guard !chunks.isEmpty else { return nil }
        let c = chunks.removeFirst()
        cond.broadcast()
        return c
    }

    /// A chunk was consumed: wipe it.
    func release(_ chunk: [UInt8]) {
        var c = chunk
        meter.remove(c.count)
        secureWipe(&c)
    }

    /// The consumer failed: producers stop, queued chunks are wiped.
    func cancel() {
        cond.lock(); defer { cond.unlock() }
        cancelled = true
        for i in chunks.indices { meter.remove(chunks[i].count); secureWipe(&chunks[i]) }
        chunks.removeAll()
        cond.broadcast()
    }
}

/// Builds the tree of a tar archive as entries arrive (in any order).
final class TreeBuilder {
    enum Child { case dir(TreeBuilder), leaf(Packer.Node) }
    let name: [UInt8]
    let rel: [UInt8]
    var children: [[UInt8]: Child] = [:]
    var explicit = false
    var mode: UInt16 = 0o755
    var mtime: (Int64, UInt32) = (0, 0)

    init(name: [UInt8], rel: [UInt8]) { self.name = name; self.rel = rel }

    /// Adds an entry; returns the node of a file or symlink (nil for a directory).
    func insert(_ e: TarEntry) throws -> Packer.Node? {
        func conflict(_ m: String) -> TarError { TarError(.duplicate, offset: e.offset, "entry \(e.index): \(m)") }
        var dir = self
        for c in e.components.dropLast() {
            switch dir.children[c] {
            case .dir(let d)?: dir = d
            case .leaf?: throw conflict("its path goes through a file or symlink")
            case nil:
                let d = TreeBuilder(name: c, rel: Packer.join(dir.rel, c))
                dir.children[c] = .dir(d)
                dir = d
            }
        }
        guard let last = e.components.last else {
            // The archive's root ("." or "./"): nothing to record (the root has no entry).
            return nil
        }
        let rel = Packer.join(dir.rel, last)
        switch e.kind {
        case .directory:
            switch dir.children[last] {
            case .dir(let d)?:
                guard !d.explicit else { throw conflict("the same directory appears twice") }
                d.explicit = true; d.mode = e.mode; d.mtime = (e.mtimeSeconds, e.mtimeNanoseconds)
            case .leaf?: throw conflict("a directory has the path of a file or symlink")
            case nil:
                let d = TreeBuilder(name: last, rel: rel)
                d.explicit = true; d.mode = e.mode; d.mtime = (e.mtimeSeconds, e.mtimeNanoseconds)
                dir.children[last] = .dir(d)
            }
            return nil
        case .file(let size):
            guard dir.children[last] == nil else { throw conflict("a file has the path of another entry") }
            let n = Packer.Node(name: last, path: [], rel: rel, kind: .file(size: size), mode: e.mode, mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds)
            dir.children[last] = .leaf(n)
            return n
        case .symlink(let target):
            guard dir.children[last] == nil else { throw conflict("a symlink has the path of another entry") }
            let n = Packer.Node(name: last, path: [], rel: rel, kind: .symlink(target), mode: e.mode, mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds)
            dir.children[last] = .leaf(n)
            return n
        }
    }

    /// The finished tree, children in name order.
    func build() -> Packer.Node {
        let sorted = children.keys.sorted { $0.lexicographicallyPrecedes($1) }
        let nodes = sorted.map { k -> Packer.Node in
            switch children[k]! {
            case .dir(let d): return d.build()
            case .leaf(let n): return n
            }
        }
        return Packer.Node(name: name, path: [], rel: rel, kind: .directory(nodes), mode: mode, mtimeSeconds: mtime.0, mtimeNanoseconds: mtime.1)
    }
}

/// Cuts a ciphertext stream into part objects (or one object).
final class PartSink {
    let store: any ObjectStore
    let layout: DatasetLayout
    let objectKey: String
    let partSize: Int64?
    var index = 0
    var inPart: Int64 = 0
    var writer: ObjectWriter?
    var committed = [ObjectKey]()

    init(store: any ObjectStore, layout: DatasetLayout, objectKey: String, partSize: Int64?) {
        self.store = store; self.layout = layout; self.objectKey = objectKey; self.partSize = partSize
    }

    func key(_ i: Int) throws -> ObjectKey {
        try layout.storeKey(partSize == nil ? objectKey : "\(objectKey).\(i)")
    }

    func write(_ bytes: [UInt8]) throws {
        var pos = 0
        while pos < bytes.count {
            if writer == nil { writer = try store.makeWriter(key(index), ifAbsent: true) }
            let room = partSize.map { Int($0 - inPart) } ?? bytes.count - pos
            let n = min(room, bytes.count - pos)
            try bytes.withUnsafeBytes { b in try writer!.write(UnsafeRawBufferPointer(rebasing: b[pos..<pos + n])) }
            pos += n
            inPart += Int64(n)
            if let ps = partSize, inPart == ps {
                _ = try writer!.commit()
                committed.append(try key(index))
                writer = nil; index += 1; inPart = 0
            }
        }
    }

    func commit() throws {
        if let w = writer { _ = try w.commit(); committed.append(try key(index)); writer = nil }
    }

    /// Removes every part written so far: a failed file leaves nothing behind.
    func abort() {
        writer?.abort(); writer = nil
        for k in committed { try? store.delete(k) }
        committed.removeAll()
    }
}
