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

    // MARK: scanning

    final class Node {
        enum Kind { case file(size: Int64), directory([Node]), symlink([UInt8]) }
        let name: [UInt8]
        let path: [UInt8]
        let kind: Kind
        let mode: UInt16
        let mtime: timespec
        init(name: [UInt8], path: [UInt8], kind: Kind, mode: UInt16, mtime: timespec) {
            self.name = name; self.path = path; self.kind = kind; self.mode = mode; self.mtime = mtime
        }
    }

    static func display(_ path: [UInt8]) -> String { String(decoding: path, as: UTF8.self) }

    static func withCPath<R>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try (path + [0]).withUnsafeBufferPointer { try $0.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) } }
    }

    func scan(path: [UInt8], name: [UInt8]) throws -> Node {
        var st = stat()
        guard Self.withCPath(path, { lstat($0, &st) }) == 0 else {
            throw DatasetError.source("cannot read \(Self.display(path)): \(String(cString: strerror(errno)))")
        }
        let mode = UInt16(st.st_mode & 0o7777)
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            return Node(name: name, path: path, kind: .file(size: Int64(st.st_size)), mode: mode, mtime: st.st_mtim)
        case S_IFLNK:
            var buf = [UInt8](repeating: 0, count: DirectoryLimits.maxSymlinkTarget + 1)
            let n = Self.withCPath(path) { p in buf.withUnsafeMutableBufferPointer { readlink(p, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count) } }
            guard n > 0, n <= DirectoryLimits.maxSymlinkTarget else {
                throw DatasetError.source("cannot pack symlink \(Self.display(path)): target unreadable or longer than \(DirectoryLimits.maxSymlinkTarget) bytes")
            }
            return Node(name: name, path: path, kind: .symlink(Array(buf[0..<n])), mode: mode, mtime: st.st_mtim)
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
                children.append(try scan(path: path + [0x2f] + n, name: n))
            }
            return Node(name: name, path: path, kind: .directory(children), mode: mode, mtime: st.st_mtim)
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

    // MARK: packing

    /// Packs `source` and returns the new version's root hash.
    public func pack(source: String, progress: (@Sendable (PackProgress) -> Void)? = nil) throws -> PackResult {
        var src = Array(source.utf8)
        while src.count > 1 && src.last == 0x2f { src.removeLast() }
        let rootNode = try scan(path: src, name: [])
        guard case .directory = rootNode.kind else { throw DatasetError.source("\(source) is not a directory") }

        var files = [Node]()
        Self.collectFiles(rootNode, into: &files)
        let total = files.reduce(Int64(0)) { if case .file(let s) = $1.kind { return $0 + s } else { return $0 } }

        let refs = try encryptFiles(files, totalBytes: total, progress: progress)
        var counts = SealCounts()
        counts.ciphertextBytes = refs.values.reduce(0) { $0 + $1.ciphertextSize }
        let (root, _, _, _) = try seal(rootNode, refs: refs, counts: &counts)
        let dirs = counts.directories, links = counts.symlinks, ctBytes = counts.ciphertextBytes
        let result = PackResult(root: root, files: files.count, directories: dirs, symlinks: links, plaintextBytes: total, ciphertextBytes: ctBytes)
        try writeVersionMarker(result)
        return result
    }

    static func collectFiles(_ n: Node, into files: inout [Node]) {
        switch n.kind {
        case .file: files.append(n)
        case .directory(let c): for child in c { collectFiles(child, into: &files) }
        case .symlink: break
        }
    }

    struct SealCounts { var directories = 0, symlinks = 0; var ciphertextBytes: Int64 = 0 }

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
            entries.append(DirectoryEntry(name: c.name, mode: c.mode, mtimeSeconds: Int64(c.mtime.tv_sec),
                                          mtimeNanoseconds: UInt32(c.mtime.tv_nsec), target: target))
        }
        let (object, hash) = try DirectoryObject.seal(entries, datasetID: layout.datasetID, key: key, parameters: options.parameters)
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

    /// Encrypts files on `concurrency` threads; returns each file's reference.
    private func encryptFiles(_ files: [Node], totalBytes: Int64, progress: (@Sendable (PackProgress) -> Void)?) throws -> [ObjectIdentifier: FileRef] {
        let shared = PackShared(files)
        let workers = max(1, min(options.concurrency, files.count))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let index: Int? = shared.state.withLock { s in
                    guard s.error == nil, s.next < shared.files.count else { return nil }
                    defer { s.next += 1 }
                    return s.next
                }
                guard let i = index else { return }
                do {
                    let ref = try encryptFile(shared.files[i]) { n in
                        let p = shared.state.withLock { s -> PackProgress in
                            s.bytes += n
                            return PackProgress(filesDone: s.done, filesTotal: shared.files.count, bytesDone: s.bytes, bytesTotal: totalBytes)
                        }
                        progress?(p)
                    }
                    let p = shared.state.withLock { s -> PackProgress in
                        s.refs[i] = ref; s.done += 1
                        return PackProgress(filesDone: s.done, filesTotal: shared.files.count, bytesDone: s.bytes, bytesTotal: totalBytes)
                    }
                    progress?(p)
                } catch {
                    shared.state.withLock { s in if s.error == nil { s.error = error } }
                    return
                }
            }
        }
        let (refs, error) = shared.state.withLock { ($0.refs, $0.error) }
        if let error { throw error }
        var out = [ObjectIdentifier: FileRef]()
        for (i, r) in refs { out[ObjectIdentifier(files[i])] = r }
        return out
    }

    /// Encrypts one file, streaming: memory use is one segment plus one read buffer.
    private func encryptFile(_ node: Node, progress: (Int64) -> Void) throws -> FileRef {
        guard case .file(let expectedSize) = node.kind else { fatalError("not a file") }
        let fd = Self.withCPath(node.path) { open($0, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        guard fd >= 0 else { throw DatasetError.source("cannot read \(Self.display(node.path)): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let fileID = try Random.bytes(DirectoryLimits.fileIDLength)
        let objectKey = try DatasetLayout.randomFileKey()
        let params = options.parameters
        let ctSize = params.ciphertextSize(plaintextSize: expectedSize)
        let partSize = options.partSize.flatMap { ctSize > $0 ? $0 : nil }
        let sink = PartSink(store: store, layout: layout, objectKey: objectKey, partSize: partSize)
        let enc = try StreamEncryptor(key: key, associatedData: AssociatedData.file(datasetID: layout.datasetID, fileID: fileID), parameters: params)
        do {
            let writer = try StreamWriter(encryptor: enc) { try sink.write($0) }
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            defer { secureWipe(&buf) }
            while true {
                let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw DatasetError.source("cannot read \(Self.display(node.path)): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                guard writer.plaintextWritten + Int64(n) <= expectedSize else { break }
                try buf.withUnsafeBytes { try writer.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                progress(Int64(n))
            }
            guard writer.plaintextWritten == expectedSize else {
                throw DatasetError.source("\(Self.display(node.path)) changed size while it was being packed; pack a stable copy")
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

struct PackState { var next = 0, done = 0; var bytes: Int64 = 0; var refs: [Int: FileRef] = [:]; var error: (any Error)? = nil }

/// Work queue shared by the pack workers.
final class PackShared: @unchecked Sendable {
    // Lock order: `state` alone; never held across I/O or crypto.
    let state = Mutex<PackState>(PackState())
    let files: [Packer.Node]
    init(_ f: [Packer.Node]) { files = f }
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
