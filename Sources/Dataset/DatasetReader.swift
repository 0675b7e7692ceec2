// Reads a packed dataset back: the authenticated tree from its root hash, and any byte
// range of any file, without FUSE.
import Dispatch
import Envelope
import ObjectStore
import Synchronization

/// A read-only view of one dataset version (its root hash).
///
/// Every directory object is checked against the hash its parent records (the root's
/// against the root hash the caller trusts), then decrypted; every file read is
/// authenticated segment by segment. Thread-safe.
public final class DatasetReader: Sendable {
    public let store: any ObjectStore
    public let layout: DatasetLayout
    public let root: SHA256Digest
    private let key: SecureBytes
    /// Decoded directories by hash, within `directoryCacheBytes`. Lock order: taken alone;
    /// no I/O or crypto under it.
    private let directories = Mutex<(listings: [SHA256Digest: DirectoryListing], bytes: Int)>(([:], 0))
    /// Memory budget for decoded directory listings (the root's is always kept).
    public let directoryCacheBytes: Int
    /// Called before a directory object is fetched from the store (a cache miss): cce4fs's
    /// request loop hands its reading of requests to another thread there.
    private let willFetch: (@Sendable () -> Void)?

    public init(store: any ObjectStore, datasetID: String, root: SHA256Digest, key: SecureBytes,
                directoryCacheBytes: Int = 64 << 20, willFetch: (@Sendable () -> Void)? = nil) throws {
        self.store = store
        self.willFetch = willFetch
        self.layout = try DatasetLayout(datasetID: datasetID)
        self.root = root
        self.key = key
        self.directoryCacheBytes = max(0, directoryCacheBytes)
    }

    /// The directory object with `hash`, fetched, hash-checked, decrypted and parsed.
    public func directory(_ hash: SHA256Digest) throws -> DirectoryListing {
        try directory(hash, expectedSize: nil)
    }

    /// A subdirectory, whose object size its parent records.
    public func directory(_ ref: DirectoryRef) throws -> DirectoryListing {
        try directory(ref.hash, expectedSize: ref.objectSize)
    }

    func directory(_ hash: SHA256Digest, expectedSize: Int64?) throws -> DirectoryListing {
        if let d = directories.withLock({ $0.listings[hash] }) { return d }
        willFetch?()
        let objectKey: ObjectKey
        do { objectKey = try layout.directoryKey(hash) } catch { throw DatasetError.wrap(error, object: nil) }
        let listing: DirectoryListing
        do {
            // The store is untrusted: bound the size before reading, so a huge object cannot
            // exhaust memory before its hash is checked. One reader: one version, one open.
            let object = try store.openReader(objectKey)
            if let expectedSize {
                guard object.size == expectedSize else {
                    throw DatasetError.integrity(object: objectKey.rawValue, detail: "directory object is \(object.size) bytes, its parent says \(expectedSize)")
                }
            } else {
                guard object.size >= 0, object.size <= DirectoryLimits.maxRootObjectSize else {
                    throw DatasetError.integrity(object: objectKey.rawValue, detail: "root directory object is \(object.size) bytes, outside 0...\(DirectoryLimits.maxRootObjectSize)")
                }
            }
            var bytes = [UInt8](repeating: 0, count: Int(object.size))
            let got = try bytes.withUnsafeMutableBytes { b in try object.read(at: 0, into: b) }
            guard got == bytes.count else { throw DatasetError.integrity(object: objectKey.rawValue, detail: "object ended early: \(got) of \(bytes.count) bytes") }
            listing = try DirectoryObject.open(bytes, expectedHash: hash, datasetID: layout.datasetID, key: key)
        } catch {
            throw DatasetError.wrap(error, object: objectKey)
        }
        let root = self.root, budget = directoryCacheBytes
        directories.withLock { cache in
            guard cache.listings[hash] == nil else { return }
            // Over budget: drop other listings (not the root) until the new one fits.
            while cache.bytes + listing.byteCount > budget,
                  let victim = cache.listings.first(where: { $0.key != root && $0.key != hash }) {
                cache.bytes -= victim.value.byteCount
                cache.listings[victim.key] = nil
            }
            cache.listings[hash] = listing
            cache.bytes += listing.byteCount
        }
        return listing
    }

    public func rootDirectory() throws -> DirectoryListing { try directory(root) }

    /// What the directory cache holds now: listings and bytes.
    public var directoryCacheUsage: (listings: Int, bytes: Int) { directories.withLock { ($0.listings.count, $0.bytes) } }

    /// The store key of a directory, for messages.
    public func objectKey(ofDirectory hash: SHA256Digest) -> String { (try? layout.directoryKey(hash).rawValue) ?? hash.hex }

    /// What a path names: the root, or an entry. Paths are "/"-separated bytes; empty
    /// components and "." are skipped, ".." is refused.
    public enum Resolved: Sendable {
        case root
        case entry(DirectoryEntry, parent: SHA256Digest)
    }

    public func resolve(_ path: String) throws -> Resolved {
        let comps = Array(path.utf8).split(separator: 0x2f).map(Array.init).filter { $0 != [0x2e] }
        var current = root
        var listing = try rootDirectory()
        var result = Resolved.root
        for (i, comp) in comps.enumerated() {
            if comp == [0x2e, 0x2e] { throw DatasetError.invalidArgument("'..' is not allowed in dataset paths") }
            let found: DirectoryEntry?
            do { found = try listing.lookup(comp) } catch { throw DatasetError.integrity(object: objectKey(ofDirectory: current), detail: "\(error)") }
            guard let entry = found else { throw DatasetError.noSuchPath(path) }
            result = .entry(entry, parent: current)
            if i < comps.count - 1 {
                guard case .directory(let d) = entry.target else { throw DatasetError.wrongKind("not a directory: a component of \(path)") }
                listing = try directory(d)
                current = d.hash
            }
        }
        return result
    }

    /// Opens a file for ranged reads: fetches and checks its header.
    public func open(_ file: FileRef) throws -> DatasetFile {
        try DatasetFile(reader: self, file: file, key: key)
    }
}

/// One open file of a dataset.
///
/// Every part is read through an `ObjectReader` whose size is checked against the directory
/// entry. The first part's reader is opened at `open` (to read the header) and kept, so a
/// file stored as one object costs a single pread per read; later parts are opened when a
/// read first touches them, or ahead of a sequential stream (once it has read half of the
/// part before), and kept while they are read.
public final class DatasetFile: Sendable {
    public let file: FileRef
    /// The file's stream parameters (its segment size), checked at open.
    public let parameters: StreamParameters
    /// Plaintext bytes served through this handle, for a mount's access log: one relaxed atomic
    /// add per read, so counting takes no lock on the read path.
    public let bytesServed = Atomic<UInt64>(0)
    private let decryptor: StreamDecryptor
    private let store: any ObjectStore
    private let parts: [(key: ObjectKey, size: Int64)]
    private let partSize: Int64
    private let firstPart: any ObjectReader
    /// Readers of the parts after the first, kept open while they are read (at most
    /// `openPartsLimit`, least recently used closed first): a part is opened once, not per
    /// read, so its reader's readahead (s3://) and open file (file://) carry over between reads.
    /// Lock order: taken alone; opening a part happens outside it.
    private let openParts = Mutex<PartReaders>(PartReaders())
    private static let openPartsLimit = 4
    /// Where the last read ended and how many bytes the current sequential run has read, to
    /// open the next part ahead of a stream (not of random reads).
    private let stream = Mutex<(end: Int64, run: Int64)>((0, 0))

    struct PartReaders {
        var readers = [Int: (reader: any ObjectReader, tick: UInt64)]()
        var tick: UInt64 = 0
        /// Parts being opened now (by a reader or ahead of a stream): wait for them.
        var opening = [Int: DispatchGroup]()

        mutating func insert(_ index: Int, _ r: any ObjectReader, limit: Int) {
            tick += 1
            readers[index] = (r, tick)
            while readers.count > limit, let old = readers.min(by: { $0.value.tick < $1.value.tick }) {
                readers[old.key] = nil
            }
        }
    }

    init(reader: DatasetReader, file: FileRef, key: SecureBytes) throws {
        self.file = file
        self.store = reader.store
        // FileRef has a public initializer: check what the decoder would have checked.
        do { parameters = try file.parameters() } catch { throw DatasetError.invalidArgument("\(error)") }
        if case .parts(let ps) = file.layout, ps <= 0 || ps % Int64(file.segmentSize) != 0 {
            throw DatasetError.invalidArgument("part size must be a positive multiple of the segment size")
        }
        guard file.size >= 0, file.fileID.count == DirectoryLimits.fileIDLength else { throw DatasetError.invalidArgument("malformed file reference") }
        var parts = [(key: ObjectKey, size: Int64)]()
        do {
            for p in file.parts { parts.append((try reader.layout.storeKey(p.key), p.size)) }
        } catch { throw DatasetError.wrap(error, object: nil) }
        self.parts = parts
        switch file.layout {
        case .single: partSize = max(1, file.ciphertextSize)
        case .parts(let ps): partSize = ps
        }
        let first = try Self.open(parts[0], in: reader.store)
        firstPart = first
        do {
            var header = [UInt8](repeating: 0, count: StreamParameters.headerLength)
            let got = try header.withUnsafeMutableBytes { b in try first.read(at: 0, into: b) }
            guard got == header.count else { throw EnvelopeError.malformed("object shorter than its header") }
            let h = try header.withUnsafeBytes { try StreamHeader(parsing: $0) }
            decryptor = try StreamDecryptor(key: key, associatedData: AssociatedData.file(datasetID: reader.layout.datasetID, fileID: file.fileID),
                                            header: h, plaintextSize: file.size, parameters: file.parameters())
        } catch {
            throw DatasetError.wrap(error, object: parts[0].key)
        }
    }

    /// The reader of part `index` (> 0): kept open, being opened (waited for), or opened now.
    private func partReader(_ index: Int) throws -> any ObjectReader {
        enum Found { case ready(any ObjectReader), wait(DispatchGroup), open(DispatchGroup) }
        for _ in 0..<2 {
            let found: Found = openParts.withLock { s in
                if let e = s.readers[index] {
                    s.tick += 1; s.readers[index] = (e.reader, s.tick)
                    return .ready(e.reader)
                }
                if let g = s.opening[index] { return .wait(g) }
                let g = DispatchGroup()
                g.enter()
                s.opening[index] = g
                return .open(g)
            }
            switch found {
            case .ready(let r): return r
            case .wait(let g): g.wait()  // then look again: opened, or failed (open it here)
            case .open(let g): return try openPart(index, g)
            }
        }
        return try Self.open(parts[index], in: store)
    }

    /// Opens part `index`, keeps it, and ends its `opening` mark.
    private func openPart(_ index: Int, _ g: DispatchGroup) throws -> any ObjectReader {
        let result = Result { try Self.open(parts[index], in: store) }
        openParts.withLock { s in
            s.opening[index] = nil
            if case .success(let r) = result { s.insert(index, r, limit: Self.openPartsLimit) }
        }
        g.leave()
        return try result.get()
    }

    /// Opens part `index` in the background, unless it is open or opening, and tells its
    /// reader the stream will read it from the start. Failures are left to the read that
    /// needs the part (it opens it again and reports).
    private func openAhead(_ index: Int) {
        guard index < parts.count else { return }
        let g: DispatchGroup? = openParts.withLock { s in
            guard s.readers[index] == nil, s.opening[index] == nil else { return nil }
            let g = DispatchGroup()
            g.enter()
            s.opening[index] = g
            return g
        }
        guard let g else { return }
        DispatchQueue.global().async { [self] in
            if let r = try? openPart(index, g) { r.willReadSequentially(from: 0) }
        }
    }

    /// Records a read of `range` and, once a sequential run has read half of a part, opens the
    /// next part ahead.
    private func noteRead(_ range: Range<Int64>) {
        guard parts.count > 1 else { return }
        let run: Int64 = stream.withLock { st in
            // Concurrent FUSE workers deliver a stream slightly out of order.
            let slack: Int64 = 4 << 20
            st.run = abs(range.lowerBound - st.end) <= slack ? st.run + Int64(range.count) : Int64(range.count)
            st.end = max(range.upperBound, abs(range.lowerBound - st.end) <= slack ? st.end : 0)
            return st.run
        }
        let index = Int(range.upperBound / partSize)
        let inPart = range.upperBound - Int64(index) * partSize
        if run >= min(partSize / 2, 4 << 20), inPart >= partSize / 2 { openAhead(index + 1) }
    }

    /// Opens one part and checks its size against the directory entry.
    private static func open(_ part: (key: ObjectKey, size: Int64), in store: any ObjectStore) throws -> any ObjectReader {
        let r: any ObjectReader
        do { r = try store.openReader(part.key) } catch { throw DatasetError.store(error) }
        guard r.size == part.size else {
            throw DatasetError.integrity(object: part.key.rawValue, detail: "object is \(r.size) bytes, the directory entry expects \(part.size) (truncated or replaced)")
        }
        return r
    }

    public var size: Int64 { file.size }

    /// Reads plaintext `range` (clamped to the file) into `out`; returns the bytes written.
    /// Only the segments the range spans are fetched and authenticated.
    ///
    /// `scratch`, when given, lends a buffer of at least the requested size for the
    /// ciphertext (a FUSE worker's reusable buffer), so the read path does not allocate.
    public func read(_ range: Range<Int64>, into out: UnsafeMutableRawBufferPointer,
                     scratch: ((Int) -> UnsafeMutableRawBufferPointer)? = nil) throws -> Int {
        let r = range.clamped(to: 0..<file.size)
        if r.isEmpty { return 0 }
        let ct = decryptor.ciphertextRange(forPlaintext: r)
        let owned: UnsafeMutableRawBufferPointer? = scratch == nil ? .allocate(byteCount: ct.count, alignment: 16) : nil
        defer { owned?.deallocate() }
        let buf = UnsafeMutableRawBufferPointer(rebasing: (owned ?? scratch!(ct.count))[0..<ct.count])
        try fetch(ct, into: buf)
        noteRead(ct)
        do {
            return try decryptor.decrypt(r, ciphertext: UnsafeRawBufferPointer(buf), into: out)
        } catch {
            throw DatasetError.wrap(error, object: parts[Int(ct.lowerBound / partSize)].key)
        }
    }

    /// Reads a range into a new array.
    public func read(_ range: Range<Int64>) throws -> [UInt8] {
        let r = range.clamped(to: 0..<file.size)
        var out = [UInt8](repeating: 0, count: r.count)
        let n = try out.withUnsafeMutableBytes { b in try read(r, into: b) }
        out.removeSubrange(n...)
        return out
    }

    /// Fetches ciphertext `range` of the stream from the parts it spans.
    func fetch(_ range: Range<Int64>, into out: UnsafeMutableRawBufferPointer) throws {
        var pos = range.lowerBound
        while pos < range.upperBound {
            let index = Int(pos / partSize)
            guard index < parts.count else { throw DatasetError.integrity(object: parts[parts.count - 1].key.rawValue, detail: "stream shorter than its directory entry says") }
            let part = parts[index]
            let reader = index == 0 ? firstPart : try partReader(index)
            let inPart = pos - Int64(index) * partSize
            let n = Int(min(range.upperBound - pos, part.size - inPart))
            let at = Int(pos - range.lowerBound)
            let got: Int
            do { got = try reader.read(at: inPart, into: UnsafeMutableRawBufferPointer(rebasing: out[at..<at + n])) } catch { throw DatasetError.store(error) }
            guard got == n else {
                throw DatasetError.integrity(object: part.key.rawValue, detail: "object ended early: \(got) of \(n) bytes at \(inPart)")
            }
            pos += Int64(n)
        }
    }

    /// Authenticates every segment (for verify), `chunk` bytes of plaintext at a time.
    public func verifyAll(chunk: Int = 4 << 20) throws {
        if file.size == 0 {
            var tag = [UInt8](repeating: 0, count: StreamParameters.tagLength)
            try tag.withUnsafeMutableBytes { b in try fetch(Int64(StreamParameters.headerLength)..<Int64(StreamParameters.headerLength + 16), into: b) }
            do { try tag.withUnsafeBytes { try decryptor.verifyEmpty($0) } } catch { throw DatasetError.wrap(error, object: parts[0].key) }
            return
        }
        var scratch = [UInt8](repeating: 0, count: chunk)
        defer { secureWipe(&scratch) }
        var pos: Int64 = 0
        while pos < file.size {
            let end = min(file.size, pos + Int64(chunk))
            _ = try scratch.withUnsafeMutableBytes { b in try read(pos..<end, into: b) }
            pos = end
        }
    }
}
