#if canImport(Glibc)
import Glibc
#endif

// Directory objects: one encrypted, authenticated listing per directory, children
// sorted by name with an offset table for O(log n) lookup. See docs/format.md §3.

/// What a directory entry names.
public enum EntryKind: UInt8, Sendable, Equatable {
    case file = 1
    case directory = 2
    case symlink = 3
}

/// How a file's ciphertext stream lies in the store.
public enum ObjectLayout: Sendable, Equatable {
    /// The whole stream is one object under `key`.
    case single
    /// The stream is cut into parts of `partSize` ciphertext bytes (the last one shorter),
    /// stored under `key` + "." + decimal part index. `partSize` is a multiple of the
    /// segment size, so no segment spans two parts.
    case parts(partSize: Int64)
}

/// A file's place in the store and the parameters to decrypt it.
public struct FileRef: Sendable, Equatable {
    /// Plaintext size in bytes.
    public var size: Int64
    /// Ciphertext segment size of its stream.
    public var segmentSize: Int
    /// Random per-version file id, bound into the stream's associated data.
    public var fileID: [UInt8]
    /// The object key (relative to the dataset's prefix) of the stream or its parts.
    public var objectKey: String
    public var layout: ObjectLayout

    public init(size: Int64, segmentSize: Int, fileID: [UInt8], objectKey: String, layout: ObjectLayout) {
        self.size = size; self.segmentSize = segmentSize; self.fileID = fileID; self.objectKey = objectKey; self.layout = layout
    }

    /// The stream's parameters.
    public func parameters() throws(EnvelopeError) -> StreamParameters { try StreamParameters(segmentSize: segmentSize) }

    /// Total ciphertext bytes of the stream.
    public var ciphertextSize: Int64 { (try? parameters().ciphertextSize(plaintextSize: size)) ?? 0 }

    /// The parts: (object key, size in bytes), in stream order.
    public var parts: [(key: String, size: Int64)] {
        switch layout {
        case .single: return [(objectKey, ciphertextSize)]
        case .parts(let partSize):
            let total = ciphertextSize
            let n = (total + partSize - 1) / partSize
            return (0..<n).map { i in ("\(objectKey).\(i)", min(partSize, total - i * partSize)) }
        }
    }
}

/// A subdirectory: the SHA-256 of its directory object, which is also its object's name.
public struct DirectoryRef: Sendable, Equatable {
    public var hash: SHA256Digest
    /// Exact size of the child's object in bytes: a reader refuses any other size before
    /// fetching it, so an untrusted store cannot make it read an oversized object.
    public var objectSize: Int64
    /// Number of entries in the child (for st_size and progress, without loading it).
    public var entryCount: UInt32
    /// Number of subdirectories in the child (for st_nlink).
    public var subdirectoryCount: UInt32
    public init(hash: SHA256Digest, objectSize: Int64, entryCount: UInt32, subdirectoryCount: UInt32) {
        self.hash = hash; self.objectSize = objectSize; self.entryCount = entryCount; self.subdirectoryCount = subdirectoryCount
    }
}

/// One child of a directory.
public struct DirectoryEntry: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        case file(FileRef)
        case directory(DirectoryRef)
        case symlink([UInt8])
    }
    /// The name: 1...255 bytes, no "/" and no NUL, not "." or "..". Not necessarily UTF-8.
    public var name: [UInt8]
    /// Permission bits (07777).
    public var mode: UInt16
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: UInt32
    public var target: Target

    public init(name: [UInt8], mode: UInt16, mtimeSeconds: Int64, mtimeNanoseconds: UInt32, target: Target) {
        self.name = name; self.mode = mode; self.mtimeSeconds = mtimeSeconds; self.mtimeNanoseconds = mtimeNanoseconds; self.target = target
    }

    public var kind: EntryKind {
        switch target {
        case .file: return .file
        case .directory: return .directory
        case .symlink: return .symlink
        }
    }

    /// The size as stat reports it: bytes for files, the target length for symlinks,
    /// the entry count for directories.
    public var size: Int64 {
        switch target {
        case .file(let f): return f.size
        case .directory(let d): return Int64(d.entryCount)
        case .symlink(let t): return Int64(t.count)
        }
    }
}

/// Limits every decoder enforces.
public enum DirectoryLimits {
    public static let maxNameLength = 255
    public static let maxSymlinkTarget = 4095
    public static let maxObjectKeyLength = 200
    public static let maxEntries = 16_000_000
    public static let maxPlaintextSize = 2 << 30
    public static let fileIDLength = 16
    /// Largest part size, and most parts, of a file stored in parts.
    public static let maxPartSize: Int64 = 1 << 40
    public static let maxParts: Int64 = 1 << 20
    /// Largest directory object a reader fetches without knowing its size (the root).
    public static let maxRootObjectSize: Int64 = 256 << 20
}

/// Validates a name as a directory entry name.
public func validateEntryName(_ name: [UInt8]) throws(EnvelopeError) {
    guard !name.isEmpty, name.count <= DirectoryLimits.maxNameLength else {
        throw .malformed("entry name length \(name.count) outside 1...\(DirectoryLimits.maxNameLength)")
    }
    guard !name.contains(0x2f), !name.contains(0) else { throw .malformed("entry name contains '/' or NUL") }
    guard name != [0x2e], name != [0x2e, 0x2e] else { throw .malformed("entry name is '.' or '..'") }
}

/// Object keys inside entries: printable ASCII from a small safe set, no "..", bounded.
public func validateObjectKey(_ key: String) throws(EnvelopeError) {
    // One pass over the bytes, no copies (this runs for every entry a lookup decodes).
    let n = key.utf8.count
    guard n > 0, n <= DirectoryLimits.maxObjectKeyLength else { throw .malformed("object key length \(n) out of range") }
    var prev: UInt8 = 0x2f  // as if after a "/": a leading "/" is a "//"
    var clean = true
    for c in key.utf8 {
        let ok = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c == 0x2f || c == 0x2d || c == 0x5f || c == 0x2e
        guard ok else { throw .malformed("object key has a character outside [A-Za-z0-9/._-]") }
        // No "..", no "//", no leading "/".
        if (c == 0x2e || c == 0x2f) && c == prev { clean = false }
        prev = c
    }
    guard clean else { throw .malformed("object key is not a clean relative key") }
}

/// The plaintext body of a directory object (format version 1).
///
///     magic "C4DR" | version u8 = 1 | flags u8 = 0 | reserved u16 = 0 | count u32
///     offsets: count × u32, each entry's offset from the start of the entry area
///     entry area: the entries, sorted by name (unsigned bytewise), names unique
public enum DirectoryCodec {
    static let magic: [UInt8] = Array("C4DR".utf8)
    public static let version: UInt8 = 1
    static let headerSize = 12

    /// Encodes entries (sorted here; duplicates are refused).
    public static func encode(_ entries: [DirectoryEntry]) throws(EnvelopeError) -> [UInt8] {
        let sorted = entries.sorted { $0.name.lexicographicallyPrecedes($1.name) }
        guard sorted.count <= DirectoryLimits.maxEntries else { throw .invalidArgument("too many entries in one directory") }
        var area = ByteWriter()
        var offsets = [UInt32]()
        offsets.reserveCapacity(sorted.count)
        var previous: [UInt8]? = nil
        for e in sorted {
            try validateEntryName(e.name)
            if let p = previous, p == e.name { throw .invalidArgument("duplicate entry name") }
            previous = e.name
            guard area.bytes.count <= Int(UInt32.max) else { throw .invalidArgument("directory too large") }
            offsets.append(UInt32(area.bytes.count))
            try encodeEntry(e, into: &area)
        }
        var w = ByteWriter()
        w.raw(magic); w.u8(version); w.u8(0); w.u16(0); w.u32(UInt32(sorted.count))
        for o in offsets { w.u32(o) }
        w.raw(area.bytes)
        guard w.bytes.count <= DirectoryLimits.maxPlaintextSize else { throw .invalidArgument("directory too large") }
        return w.bytes
    }

    static func encodeEntry(_ e: DirectoryEntry, into w: inout ByteWriter) throws(EnvelopeError) {
        guard e.mode & ~0o7777 == 0 else { throw .invalidArgument("mode has bits outside 07777") }
        guard e.mtimeNanoseconds < 1_000_000_000 else { throw .invalidArgument("mtime nanoseconds out of range") }
        w.u8(UInt8(e.name.count)); w.raw(e.name)
        w.u8(e.kind.rawValue)
        w.u16(e.mode)
        w.u64(UInt64(bitPattern: e.mtimeSeconds)); w.u32(e.mtimeNanoseconds)
        switch e.target {
        case .file(let f):
            guard f.size >= 0 else { throw .invalidArgument("negative file size") }
            _ = try f.parameters()
            guard f.fileID.count == DirectoryLimits.fileIDLength else { throw .invalidArgument("file id is 16 bytes") }
            try validateObjectKey(f.objectKey)
            w.u64(UInt64(f.size)); w.u32(UInt32(f.segmentSize)); w.raw(f.fileID)
            switch f.layout {
            case .single: w.u8(0)
            case .parts(let ps):
                guard ps > 0, ps <= DirectoryLimits.maxPartSize, ps % Int64(f.segmentSize) == 0 else {
                    throw .invalidArgument("part size must be a positive multiple of the segment size, at most 1 TiB")
                }
                guard (f.ciphertextSize + ps - 1) / ps <= DirectoryLimits.maxParts else { throw .invalidArgument("more than 2^20 parts; use a larger part size") }
                w.u8(1); w.u64(UInt64(ps))
            }
            w.u8(UInt8(f.objectKey.utf8.count)); w.raw(Array(f.objectKey.utf8))
        case .directory(let d):
            guard d.objectSize >= Int64(StreamParameters.headerLength + StreamParameters.tagLength) else { throw .invalidArgument("directory object size out of range") }
            w.raw(d.hash.bytes); w.u64(UInt64(d.objectSize)); w.u32(d.entryCount); w.u32(d.subdirectoryCount)
        case .symlink(let t):
            guard !t.isEmpty, t.count <= DirectoryLimits.maxSymlinkTarget, !t.contains(0) else {
                throw .invalidArgument("symlink target must be 1...\(DirectoryLimits.maxSymlinkTarget) bytes without NUL")
            }
            w.u16(UInt16(t.count)); w.raw(t)
        }
    }

    static func decodeEntry(_ r: inout ByteReader) throws(EnvelopeError) -> DirectoryEntry {
        let nameLen = Int(try r.u8())
        let name = try r.bytes(nameLen)
        try validateEntryName(name)
        let kindByte = try r.u8()
        guard let kind = EntryKind(rawValue: kindByte) else { throw .malformed("unknown entry kind \(kindByte)") }
        let mode = try r.u16()
        guard mode & ~0o7777 == 0 else { throw .malformed("mode has bits outside 07777") }
        let sec = Int64(bitPattern: try r.u64())
        let nsec = try r.u32()
        guard nsec < 1_000_000_000 else { throw .malformed("mtime nanoseconds out of range") }
        let target: DirectoryEntry.Target
        switch kind {
        case .file:
            let size = try r.u64()
            guard size <= UInt64(Int64.max / 2) else { throw .malformed("file size out of range") }
            let seg = Int(try r.u32())
            guard let params = try? StreamParameters(segmentSize: seg) else { throw .malformed("segment size \(seg) out of range") }
            guard params.segmentCount(plaintextSize: Int64(size)) <= Int64(UInt32.max) else { throw .malformed("file too large for its segment size") }
            let fileID = try r.bytes(DirectoryLimits.fileIDLength)
            let layoutByte = try r.u8()
            let layout: ObjectLayout
            switch layoutByte {
            case 0: layout = .single
            case 1:
                let ps = try r.u64()
                guard ps > 0, ps <= UInt64(DirectoryLimits.maxPartSize), ps % UInt64(seg) == 0 else { throw .malformed("part size \(ps) is not a positive multiple of the segment size") }
                let total = params.ciphertextSize(plaintextSize: Int64(size))
                guard (total + Int64(ps) - 1) / Int64(ps) <= DirectoryLimits.maxParts else { throw .malformed("file has more than 2^20 parts") }
                layout = .parts(partSize: Int64(ps))
            default: throw .malformed("unknown object layout \(layoutByte)")
            }
            let keyLen = Int(try r.u8())
            let keyBytes = try r.bytes(keyLen)
            guard let key = String(validating: keyBytes, as: UTF8.self) else { throw .malformed("object key is not ASCII") }
            try validateObjectKey(key)
            target = .file(FileRef(size: Int64(size), segmentSize: seg, fileID: fileID, objectKey: key, layout: layout))
        case .directory:
            let hash = SHA256Digest(unchecked: try r.bytes(32))
            let objectSize = try r.u64()
            guard objectSize >= UInt64(StreamParameters.headerLength + StreamParameters.tagLength),
                  objectSize <= UInt64(StreamParameters.default.ciphertextSize(plaintextSize: Int64(DirectoryLimits.maxPlaintextSize))) else {
                throw .malformed("directory object size \(objectSize) out of range")
            }
            let count = try r.u32(), subdirs = try r.u32()
            guard subdirs <= count else { throw .malformed("subdirectory count exceeds entry count") }
            target = .directory(DirectoryRef(hash: hash, objectSize: Int64(objectSize), entryCount: count, subdirectoryCount: subdirs))
        case .symlink:
            let n = Int(try r.u16())
            guard n >= 1, n <= DirectoryLimits.maxSymlinkTarget else { throw .malformed("symlink target length \(n) out of range") }
            let t = try r.bytes(n)
            guard !t.contains(0) else { throw .malformed("symlink target contains NUL") }
            target = .symlink(t)
        }
        return DirectoryEntry(name: name, mode: mode, mtimeSeconds: sec, mtimeNanoseconds: nsec, target: target)
    }
}

/// A decoded directory body. Construction checks the header and the offset table
/// (O(n) integer reads); entries are parsed on demand, each with full bounds checks, so
/// `lookup` touches O(log n) entries. `validateAll` checks everything (verify does).
public struct DirectoryListing: Sendable {
    private let body: [UInt8]
    private let offsets: [UInt32]
    private let areaStart: Int
    public var count: Int { offsets.count }
    /// Memory held by the decoded listing (for cache budgets).
    public var byteCount: Int { body.count + offsets.count * 4 + 64 }

    public init(plaintext: [UInt8]) throws(EnvelopeError) {
        guard plaintext.count <= DirectoryLimits.maxPlaintextSize else { throw .malformed("directory body too large") }
        let parsed = try plaintext.withBytes { (buf) throws(EnvelopeError) -> ([UInt32], Int) in
            var r = ByteReader(buf, what: "directory header")
            let magic = try r.bytes(4)
            guard magic == DirectoryCodec.magic else { throw .malformed("not a directory body (bad magic)") }
            let version = try r.u8()
            guard version == DirectoryCodec.version else { throw .unsupportedVersion("directory version \(version); this build reads \(DirectoryCodec.version)") }
            let flags = try r.u8(), reserved = try r.u16()
            guard flags == 0, reserved == 0 else { throw .malformed("unknown directory flags") }
            let count = Int(try r.u32())
            guard count <= DirectoryLimits.maxEntries, count <= (buf.count - DirectoryCodec.headerSize) / 4 else {
                throw .malformed("entry count \(count) does not fit the body")
            }
            var offsets = [UInt32](); offsets.reserveCapacity(count)
            var r2 = ByteReader(buf, from: r.pos, what: "directory offset table")
            for _ in 0..<count { offsets.append(try r2.u32()) }
            let areaStart = r2.pos
            let areaSize = buf.count - areaStart
            // Offsets strictly increase and the first is 0, so entries cannot overlap or alias.
            var prev: Int64 = -1
            for (i, o) in offsets.enumerated() {
                guard Int64(o) > prev, Int(o) < areaSize, i > 0 || o == 0 else { throw .malformed("directory offset table is not increasing or points outside the body") }
                prev = Int64(o)
            }
            if count == 0 && areaSize != 0 { throw .malformed("trailing bytes after an empty directory") }
            return (offsets, areaStart)
        }
        self.body = plaintext
        self.offsets = parsed.0
        self.areaStart = parsed.1
    }

    private func bounds(_ i: Int) -> (Int, Int) {
        let start = areaStart + Int(offsets[i])
        let end = i + 1 < offsets.count ? areaStart + Int(offsets[i + 1]) : body.count
        return (start, end)
    }

    /// The entry at index `i` (sorted order). Every byte of its slot must be used.
    public func entry(at i: Int) throws(EnvelopeError) -> DirectoryEntry {
        guard i >= 0, i < offsets.count else { throw .invalidArgument("entry index out of range") }
        let (start, end) = bounds(i)
        return try body.withBytes { (buf) throws(EnvelopeError) -> DirectoryEntry in
            var r = ByteReader(buf, from: start, to: end, what: "directory entry")
            let e = try DirectoryCodec.decodeEntry(&r)
            guard r.remaining == 0 else { throw .malformed("directory entry has \(r.remaining) trailing bytes") }
            return e
        }
    }

    /// Binary search by name: O(log n) entries touched, names compared in place (no copies).
    public func lookup(_ name: [UInt8]) throws(EnvelopeError) -> DirectoryEntry? {
        var lo = 0, hi = offsets.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let order = try compareName(at: mid, with: name)
            if order == 0 { return try entry(at: mid) }
            if order < 0 { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    /// memcmp-style comparison of entry `i`'s name with `name` (negative: the entry sorts first).
    func compareName(at i: Int, with name: [UInt8]) throws(EnvelopeError) -> Int {
        let (start, end) = bounds(i)
        guard start < end, start >= 0, end <= body.count else { throw .malformed("directory entry out of bounds") }
        return try body.withBytes { (buf) throws(EnvelopeError) -> Int in
            let n = Int(buf[start])
            guard start + 1 + n <= end else { throw .malformed("directory entry name truncated") }
            return name.withUnsafeBytes { q in
                let common = min(n, q.count)
                let c = common == 0 ? 0 : Int(memcmp(buf.baseAddress! + start + 1, q.baseAddress!, common))
                return c != 0 ? c : n - q.count
            }
        }
    }

    /// Decodes every entry and checks the order (strictly increasing names).
    public func validateAll() throws(EnvelopeError) -> [DirectoryEntry] {
        var out = [DirectoryEntry](); out.reserveCapacity(count)
        for i in 0..<count {
            let e = try entry(at: i)
            if let p = out.last, !p.name.lexicographicallyPrecedes(e.name) { throw .malformed("directory entries are not strictly sorted") }
            out.append(e)
        }
        return out
    }
}

/// Associated data, bound into every stream's key derivation (docs/format.md §4).
public enum AssociatedData {
    /// Dataset ids: 1...64 bytes of [a-z0-9._-], starting with a letter or digit.
    public static func validateDatasetID(_ id: String) throws(EnvelopeError) {
        let u = Array(id.utf8)
        guard (1...64).contains(u.count) else { throw .invalidArgument("dataset id must be 1 to 64 characters") }
        for (i, c) in u.enumerated() {
            let alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a)
            guard alnum || (i > 0 && (c == 0x2e || c == 0x2d || c == 0x5f)) else {
                throw .invalidArgument("dataset id '\(id)' must use a-z, 0-9, '.', '-', '_' and start with a letter or digit")
            }
        }
    }

    /// "cce4long/file/v1" NUL ‖ len ‖ dataset id ‖ 16-byte file id.
    public static func file(datasetID: String, fileID: [UInt8]) -> [UInt8] {
        precondition(fileID.count == DirectoryLimits.fileIDLength)
        let d = Array(datasetID.utf8)
        return Array("cce4long/file/v1".utf8) + [0, UInt8(d.count)] + d + fileID
    }

    /// "cce4long/dir/v1" NUL ‖ len ‖ dataset id.
    public static func directory(datasetID: String) -> [UInt8] {
        let d = Array(datasetID.utf8)
        return Array("cce4long/dir/v1".utf8) + [0, UInt8(d.count)] + d
    }
}

/// Sealing and opening whole directory objects.
public enum DirectoryObject {
    /// Encrypts a listing; returns the object bytes and their SHA-256 (the directory's name).
    /// `header` is for deterministic test packs only (see `StreamEncryptor`).
    public static func seal(_ entries: [DirectoryEntry], datasetID: String, key: SecureBytes,
                            parameters: StreamParameters = .default, header: StreamHeader? = nil) throws -> (object: [UInt8], hash: SHA256Digest) {
        var body = try DirectoryCodec.encode(entries)
        defer { secureWipe(&body) }
        let obj = try StreamEncryptor.encrypt(body, key: key, associatedData: AssociatedData.directory(datasetID: datasetID),
                                              parameters: parameters, header: header)
        return (obj, SHA256Digest.hash(obj))
    }

    /// Checks the object against the hash its parent (or the ledger) names, then decrypts
    /// and parses it. Any mismatch is an authentication failure.
    public static func open(_ object: [UInt8], expectedHash: SHA256Digest, datasetID: String, key: SecureBytes,
                            parameters: StreamParameters = .default) throws -> DirectoryListing {
        guard SHA256Digest.hash(object).constantTimeEquals(expectedHash) else {
            throw EnvelopeError.authenticationFailed("directory object does not match its hash \(expectedHash.hex.prefix(16))…")
        }
        let body = try StreamDecryptor.decryptAll(object, key: key, associatedData: AssociatedData.directory(datasetID: datasetID), parameters: parameters)
        return try DirectoryListing(plaintext: body)
    }
}
