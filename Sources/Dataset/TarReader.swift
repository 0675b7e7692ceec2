// A strict, streaming reader of tar archives (POSIX ustar, pax, GNU long names).
// See docs/tar.md for exactly what is accepted and refused.
import Envelope
#if canImport(Glibc)
import Glibc
#endif

/// A pull source of bytes: a file, a pipe, an HTTP request body.
public protocol ByteSource: AnyObject {
    /// Reads up to `buffer.count` bytes into `buffer`; returns how many, 0 only at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// A `ByteSource` over bytes in memory (tests, small archives).
public final class BytesSource: ByteSource {
    private let bytes: [UInt8]
    private var pos = 0
    /// At most this many bytes per `read` (tests use 1 to exercise every boundary).
    private let maxRead: Int

    public init(_ bytes: [UInt8], maxRead: Int = Int.max) {
        self.bytes = bytes; self.maxRead = max(1, maxRead)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - pos, maxRead)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { b in buffer.baseAddress!.copyMemory(from: b.baseAddress! + pos, byteCount: n) }
        pos += n
        return n
    }
}

/// Bounds on what a tar archive may contain; exceeding one is a `TarError.limitExceeded`.
public struct TarLimits: Sendable {
    /// Entries (files, directories, symlinks; extension headers not counted).
    public var maxEntries: Int = 1_000_000
    /// Bytes of one normalised path.
    public var maxNameBytes: Int = 4096
    /// Bytes of all normalised paths together, and of the directory paths they imply: the
    /// reader and the packer keep every one in memory (duplicate checks, the tree), so this
    /// bounds that memory (about 3× this).
    public var maxTotalNameBytes: Int = 128 << 20
    /// Components of one path.
    public var maxDepth: Int = 128
    /// Bytes of one regular file.
    public var maxFileBytes: Int64 = 1 << 40
    /// Bytes of all regular files together.
    public var maxTotalBytes: Int64 = 4 << 40
    /// Bytes of one pax extended header (and of one GNU long name record).
    public var maxPaxHeaderBytes: Int = 1 << 20
    /// Zero bytes accepted after the two end-of-archive blocks (record padding).
    public var maxTrailingZeroBytes: Int = 1 << 20
    public init() {}
}

/// Why an archive was refused. Messages give the entry's index and byte offset, never
/// its name or contents: the names are the dataset's plaintext.
public struct TarError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable {
        /// The stream ended inside a header, a file or before the end-of-archive blocks.
        case truncated
        /// A header field, pax record or GNU long name is malformed.
        case malformedHeader
        /// A header's checksum does not match its bytes.
        case badChecksum
        /// Hard links, devices, FIFOs, sparse files, volume labels, unknown types.
        case unsupportedType
        /// An absolute path, "..", an empty component, NUL, a component over 255 bytes.
        case unsafeName
        /// The same path twice, or a path under a non-directory.
        case duplicate
        /// A `TarLimits` bound.
        case limitExceeded
        /// Non-zero bytes after the end-of-archive blocks.
        case trailingGarbage
    }
    public let code: Code
    /// Byte offset of the header (or block) at fault.
    public let offset: Int64
    public let message: String

    public init(_ code: Code, offset: Int64, _ message: String) {
        self.code = code; self.offset = offset; self.message = message
    }

    public var description: String { "invalid tar archive at byte \(offset): \(message)" }
}

/// One entry of an archive.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file(size: Int64)
        case directory
        /// The target as stored, never resolved: it is data.
        case symlink(target: [UInt8])
    }
    /// The normalised path's components (empty for the archive's root, "." or "./").
    public let components: [[UInt8]]
    public let kind: Kind
    /// Permission bits (07777).
    public let mode: UInt16
    public let mtimeSeconds: Int64
    public let mtimeNanoseconds: UInt32
    /// 0-based index among the archive's entries (extension headers not counted).
    public let index: Int
    /// Byte offset of the entry's first header (extension headers included).
    public let offset: Int64

    /// The path joined with "/".
    public var path: [UInt8] { Array(components.joined(separator: [0x2f])) }
}

/// Reads a tar archive from a `ByteSource` entry by entry, in one pass and bounded memory.
///
///     let r = TarReader(source)
///     while let e = try r.next() {
///         if case .file = e.kind { while try r.readContent(into: buf) > 0 { … } }
///     }
///
/// Content not read before the next `next()` is skipped. `next()` returns nil only after
/// the two zero blocks that end an archive and zero padding up to the end of the source.
/// Errors from the source are rethrown unchanged; format errors are `TarError`s.
public final class TarReader {
    static let block = 512
    public let limits: TarLimits
    private let source: any ByteSource
    private var buffer: [UInt8]
    private var bufStart = 0, bufEnd = 0
    private var sourceEnded = false
    /// Bytes consumed from the archive.
    public private(set) var offset: Int64 = 0
    private var contentRemaining: Int64 = 0
    private var paddingRemaining = 0
    private var entryCount = 0
    private var totalBytes: Int64 = 0
    private var totalNameBytes = 0
    /// Every path so far: true for directories.
    private var seen = [[UInt8]: Bool]()
    /// Every directory some path goes through (explicit or not).
    private var parents = Set<[UInt8]>()
    private var finished = false
    private var failed: (any Error)? = nil
    private var globalHeaders = 0
    private var globalMtime: (Int64, UInt32)? = nil

    public init(_ source: any ByteSource, limits: TarLimits = TarLimits(), bufferSize: Int = 64 << 10) {
        self.source = source
        self.limits = limits
        self.buffer = [UInt8](repeating: 0, count: max(bufferSize, Self.block))
    }

    deinit { secureWipe(&buffer) }

    // MARK: buffered input

    /// Makes `n` (≤ buffer size) bytes available; false at the end of the source.
    private func fill(_ n: Int) throws -> Bool {
        if bufEnd - bufStart >= n { return true }
        if bufStart > 0 {
            let live = bufEnd - bufStart
            buffer.withUnsafeMutableBytes { b in
                if live > 0 { b.baseAddress!.copyMemory(from: b.baseAddress! + bufStart, byteCount: live) }
            }
            bufStart = 0; bufEnd = live
        }
        while bufEnd < n && !sourceEnded {
            let got = try buffer.withUnsafeMutableBytes { b in
                try source.read(into: UnsafeMutableRawBufferPointer(rebasing: b[bufEnd...]))
            }
            if got == 0 { sourceEnded = true } else {
                guard got > 0, got <= buffer.count - bufEnd else {
                    throw TarError(.truncated, offset: offset, "the byte source returned an invalid count \(got)")
                }
                bufEnd += got
            }
        }
        return bufEnd - bufStart >= n
    }

    /// Consumes one 512-byte block; nil at a clean end of the source.
    private func readBlock() throws -> [UInt8]? {
        guard try fill(Self.block) else {
            if bufEnd - bufStart == 0 { return nil }
            throw TarError(.truncated, offset: offset, "the archive ends inside a 512-byte block")
        }
        let b = Array(buffer[bufStart..<bufStart + Self.block])
        bufStart += Self.block
        offset += Int64(Self.block)
        return b
    }

    /// Consumes exactly `n` bytes (content of an extension header).
    private func readExact(_ n: Int, what: String) throws -> [UInt8] {
        var out = [UInt8](); out.reserveCapacity(n)
        while out.count < n {
            guard try fill(1) else { throw TarError(.truncated, offset: offset, "the archive ends inside \(what)") }
            let k = min(n - out.count, bufEnd - bufStart)
            out.append(contentsOf: buffer[bufStart..<bufStart + k])
            bufStart += k; offset += Int64(k)
        }
        return out
    }

    private func skip(_ n: Int64, what: String) throws {
        var left = n
        while left > 0 {
            guard try fill(1) else { throw TarError(.truncated, offset: offset, "the archive ends inside \(what)") }
            let k = Int(min(left, Int64(bufEnd - bufStart)))
            bufStart += k; offset += Int64(k); left -= Int64(k)
        }
    }

    private func padding(_ size: Int64) -> Int { Int((Int64(Self.block) - size % Int64(Self.block)) % Int64(Self.block)) }

    // MARK: content

    /// Reads the current file's content; returns 0 at its end. Never reads past the entry.
    public func readContent(into out: UnsafeMutableRawBufferPointer) throws -> Int {
        if let f = failed { throw f }
        guard contentRemaining > 0, out.count > 0 else { return 0 }
        do {
            guard try fill(1) else { throw TarError(.truncated, offset: offset, "the archive ends inside entry \(entryCount - 1)'s content") }
            let k = Int(min(contentRemaining, Int64(min(out.count, bufEnd - bufStart))))
            buffer.withUnsafeBytes { b in out.baseAddress!.copyMemory(from: b.baseAddress! + bufStart, byteCount: k) }
            bufStart += k; offset += Int64(k); contentRemaining -= Int64(k)
            return k
        } catch {
            failed = error
            throw error
        }
    }

    // MARK: headers

    /// The next entry, or nil after the end-of-archive blocks.
    public func next() throws -> TarEntry? {
        if let f = failed { throw f }
        if finished { return nil }
        do {
            return try nextEntry()
        } catch {
            failed = error
            throw error
        }
    }

    private struct Pending {
        var pax: [String: [UInt8]] = [:]
        var hadPax = false
        var longName: [UInt8]? = nil
        var longLink: [UInt8]? = nil
        var start: Int64? = nil
    }

    private func nextEntry() throws -> TarEntry? {
        if contentRemaining > 0 { try skip(contentRemaining, what: "entry \(entryCount - 1)'s content"); contentRemaining = 0 }
        if paddingRemaining > 0 { try skip(Int64(paddingRemaining), what: "padding"); paddingRemaining = 0 }
        var pending = Pending()
        while true {
            let at = offset
            guard let h = try readBlock() else {
                throw TarError(.truncated, offset: at, "the archive ends without its two zero end-of-archive blocks")
            }
            if h.allSatisfy({ $0 == 0 }) {
                if pending.start != nil { throw TarError(.malformedHeader, offset: at, "an extension header is followed by the end of the archive") }
                try finishArchive(firstZeroAt: at)
                return nil
            }
            if pending.start == nil { pending.start = at }
            try verifyChecksum(h, at: at)
            let magic = Array(h[257..<263]), version = Array(h[263..<265])
            let posix = magic == Array("ustar\0".utf8) && version == Array("00".utf8)
            let gnu = magic == Array("ustar ".utf8) && version == [0x20, 0]
            guard posix || gnu else {
                throw TarError(.malformedHeader, offset: at, "not a ustar, pax or GNU tar header (pre-POSIX v7 archives are not accepted)")
            }
            let type = h[156]
            let size = try number(h, 124, 12, "size", at: at)
            guard size >= 0 else { throw TarError(.malformedHeader, offset: at, "negative size") }
            switch type {
            case UInt8(ascii: "x"):
                guard !pending.hadPax else { throw TarError(.malformedHeader, offset: at, "two pax extended headers for one entry") }
                pending.pax = try readPax(size: size, at: at)
                pending.hadPax = true
                continue
            case UInt8(ascii: "g"):
                globalHeaders += 1
                guard globalHeaders <= 1000 else { throw TarError(.limitExceeded, offset: at, "more than 1000 pax global headers") }
                let g = try readPax(size: size, at: at)
                for k in ["path", "linkpath", "size"] where g[k] != nil {
                    throw TarError(.malformedHeader, offset: at, "a pax global header sets '\(k)', which only makes sense per entry")
                }
                if let m = g["mtime"] { globalMtime = try paxTime(m, at: at) }
                if pending.start == at { pending.start = nil }
                continue
            case UInt8(ascii: "L"), UInt8(ascii: "K"):
                let isName = type == UInt8(ascii: "L")
                guard (isName ? pending.longName : pending.longLink) == nil else {
                    throw TarError(.malformedHeader, offset: at, "two GNU long \(isName ? "name" : "link") records for one entry")
                }
                guard size <= Int64(min(limits.maxNameBytes + 1, limits.maxPaxHeaderBytes)) else {
                    throw TarError(.limitExceeded, offset: at, "GNU long \(isName ? "name" : "link") record of \(size) bytes exceeds \(min(limits.maxNameBytes + 1, limits.maxPaxHeaderBytes))")
                }
                var v = try readExact(Int(size), what: "a GNU long name record")
                try skip(Int64(padding(size)), what: "padding")
                // The record is the name and a NUL terminator; GNU tar writes exactly one.
                if let z = v.firstIndex(of: 0) {
                    guard v[z...].allSatisfy({ $0 == 0 }) else { throw TarError(.unsafeName, offset: at, "GNU long name contains NUL") }
                    v.removeSubrange(z...)
                }
                if isName { pending.longName = v } else { pending.longLink = v }
                continue
            default:
                break
            }
            return try entry(h, type: type, size: size, pending: pending, at: at)
        }
    }

    private func entry(_ h: [UInt8], type: UInt8, size headerSize: Int64, pending: Pending, at: Int64) throws -> TarEntry {
        let start = pending.start ?? at
        let index = entryCount
        func fail(_ c: TarError.Code, _ m: String) -> TarError { TarError(c, offset: start, "entry \(index): \(m)") }
        switch type {
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"), UInt8(ascii: "5"), UInt8(ascii: "2"): break
        case UInt8(ascii: "1"): throw fail(.unsupportedType, "hard links are not supported; archive the file itself (GNU tar --hard-dereference)")
        case UInt8(ascii: "3"): throw fail(.unsupportedType, "character devices cannot be packed")
        case UInt8(ascii: "4"): throw fail(.unsupportedType, "block devices cannot be packed")
        case UInt8(ascii: "6"): throw fail(.unsupportedType, "FIFOs cannot be packed")
        case UInt8(ascii: "S"): throw fail(.unsupportedType, "sparse files are not supported; archive without --sparse")
        case UInt8(ascii: "V"): throw fail(.unsupportedType, "volume labels are not supported")
        case UInt8(ascii: "M"): throw fail(.unsupportedType, "multi-volume archives are not supported")
        case UInt8(ascii: "D"): throw fail(.unsupportedType, "GNU incremental (dump directory) entries are not supported")
        default:
            let t = (0x20..<0x7f).contains(type) ? "'\(Character(Unicode.Scalar(type)))'" : "byte \(type)"
            throw fail(.unsupportedType, "unsupported entry type \(t)")
        }
        for k in pending.pax.keys where k.hasPrefix("GNU.sparse") {
            throw fail(.unsupportedType, "sparse files are not supported (pax '\(k)'); archive without --sparse")
        }
        guard entryCount < limits.maxEntries else { throw fail(.limitExceeded, "more than \(limits.maxEntries) entries") }

        // Path: pax 'path', else GNU 'L', else ustar prefix + name.
        var rawPath: [UInt8]
        if let p = pending.pax["path"], !p.isEmpty {
            rawPath = p
        } else if let l = pending.longName {
            rawPath = l
        } else {
            rawPath = field(h, 0, 100)
            let magicPosix = h[257..<263].elementsEqual("ustar\0".utf8)
            let prefix = field(h, 345, 155)
            if magicPosix && !prefix.isEmpty { rawPath = prefix + [0x2f] + rawPath }
        }
        guard rawPath.count <= limits.maxNameBytes else { throw fail(.limitExceeded, "path of \(rawPath.count) bytes exceeds \(limits.maxNameBytes)") }
        let isDir = type == UInt8(ascii: "5")
        let components = try normalise(rawPath, directory: isDir, fail: fail)
        guard components.count <= limits.maxDepth else { throw fail(.limitExceeded, "path depth \(components.count) exceeds \(limits.maxDepth)") }

        var size = headerSize
        if let s = pending.pax["size"], !s.isEmpty {
            guard s.count <= 19, s.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let v = Int64(String(decoding: s, as: UTF8.self)) else {
                throw fail(.malformedHeader, "pax size is not a decimal number")
            }
            size = v
        }
        let mode = UInt16(truncatingIfNeeded: try number(h, 100, 8, "mode", at: start) & 0o7777)
        var mtime: (Int64, UInt32) = (try number(h, 136, 12, "mtime", at: start), 0)
        if let g = globalMtime { mtime = g }
        if let m = pending.pax["mtime"], !m.isEmpty { mtime = try paxTime(m, at: start) }

        let kind: TarEntry.Kind
        switch type {
        case UInt8(ascii: "5"):
            guard size == 0 else { throw fail(.malformedHeader, "directory with a size of \(size) bytes") }
            kind = .directory
        case UInt8(ascii: "2"):
            guard size == 0 else { throw fail(.malformedHeader, "symlink with a size of \(size) bytes") }
            var target: [UInt8]
            if let p = pending.pax["linkpath"], !p.isEmpty { target = p } else if let k = pending.longLink { target = k } else { target = field(h, 157, 100) }
            guard !target.isEmpty else { throw fail(.malformedHeader, "symlink without a target") }
            guard !target.contains(0) else { throw fail(.unsafeName, "symlink target contains NUL") }
            guard target.count <= DirectoryLimits.maxSymlinkTarget else {
                throw fail(.limitExceeded, "symlink target of \(target.count) bytes exceeds \(DirectoryLimits.maxSymlinkTarget)")
            }
            kind = .symlink(target: target)
        default:
            guard components.count > 0 else { throw fail(.unsafeName, "a regular file named '.' (the archive's root)") }
            guard size <= limits.maxFileBytes else { throw fail(.limitExceeded, "file of \(size) bytes exceeds \(limits.maxFileBytes)") }
            guard totalBytes <= limits.maxTotalBytes - size else { throw fail(.limitExceeded, "files total more than \(limits.maxTotalBytes) bytes") }
            totalBytes += size
            kind = .file(size: size)
        }
        if case .symlink = kind, components.isEmpty { throw fail(.unsafeName, "a symlink named '.' (the archive's root)") }
        let path = Array(components.joined(separator: [0x2f]))
        totalNameBytes += path.count
        guard totalNameBytes <= limits.maxTotalNameBytes else { throw fail(.limitExceeded, "paths total more than \(limits.maxTotalNameBytes) bytes") }
        guard seen[path] == nil else { throw fail(.duplicate, "the same path appears twice") }
        var prefix = [UInt8]()
        for c in components.dropLast() {
            prefix = prefix.isEmpty ? c : prefix + [0x2f] + c
            if seen[prefix] == false { throw fail(.duplicate, "the path goes through a file or symlink") }
            if parents.insert(prefix).inserted { totalNameBytes += prefix.count }
        }
        // Implied directories count too: deep paths cannot multiply the memory they take.
        guard totalNameBytes <= limits.maxTotalNameBytes else { throw fail(.limitExceeded, "paths total more than \(limits.maxTotalNameBytes) bytes") }
        if !isDir && parents.contains(path) { throw fail(.duplicate, "a file or symlink has the path of a directory") }
        seen[path] = isDir
        entryCount += 1
        if case .file(let s) = kind { contentRemaining = s; paddingRemaining = padding(s) }
        return TarEntry(components: components, kind: kind, mode: mode, mtimeSeconds: mtime.0, mtimeNanoseconds: mtime.1, index: index, offset: start)
    }

    /// Splits and checks a path. A leading "./" (any number) and one trailing "/" on a
    /// directory are dropped; everything else that is not a clean relative path is refused.
    private func normalise(_ raw: [UInt8], directory: Bool, fail: (TarError.Code, String) -> TarError) throws -> [[UInt8]] {
        guard !raw.contains(0) else { throw fail(.unsafeName, "path contains NUL") }
        guard !raw.isEmpty else { throw fail(.unsafeName, "empty path") }
        guard raw.first != 0x2f else { throw fail(.unsafeName, "absolute path; archive relative paths (tar -C DIR .)") }
        var p = raw[...]
        while p.starts(with: [0x2e, 0x2f]) { p = p.dropFirst(2) }
        if p == [0x2e] { p = p.dropFirst() }  // "." or "./": the root
        if p.last == 0x2f {
            guard directory else { throw fail(.unsafeName, "a non-directory path ends with '/'") }
            p = p.dropLast()
        }
        if p.isEmpty {
            guard directory else { throw fail(.unsafeName, "a non-directory names the archive's root") }
            return []
        }
        var out = [[UInt8]]()
        for c in p.split(separator: 0x2f, omittingEmptySubsequences: false) {
            guard !c.isEmpty else { throw fail(.unsafeName, "path has an empty component ('//')") }
            guard !c.elementsEqual([0x2e, 0x2e]) else { throw fail(.unsafeName, "path contains '..'") }
            guard !c.elementsEqual([0x2e]) else { throw fail(.unsafeName, "path contains a '.' component") }
            guard c.count <= DirectoryLimits.maxNameLength else {
                throw fail(.unsafeName, "a path component is longer than \(DirectoryLimits.maxNameLength) bytes")
            }
            out.append(Array(c))
        }
        return out
    }

    /// After the first zero block: a second one, then only zero bytes up to the end.
    private func finishArchive(firstZeroAt: Int64) throws {
        let at = offset
        guard let z = try readBlock() else {
            throw TarError(.truncated, offset: at, "the archive ends after one zero block; two end an archive")
        }
        guard z.allSatisfy({ $0 == 0 }) else {
            throw TarError(.malformedHeader, offset: at, "a lone zero block inside the archive")
        }
        var trailing = 0
        while try fill(1) {
            let live = buffer[bufStart..<bufEnd]
            if let bad = live.firstIndex(where: { $0 != 0 }) {
                throw TarError(.trailingGarbage, offset: offset + Int64(bad - bufStart), "non-zero bytes after the end of the archive")
            }
            trailing += live.count
            offset += Int64(live.count)
            bufStart = bufEnd
            guard trailing <= limits.maxTrailingZeroBytes else {
                throw TarError(.limitExceeded, offset: offset, "more than \(limits.maxTrailingZeroBytes) bytes of padding after the end of the archive")
            }
        }
        finished = true
    }

    // MARK: fields

    private func verifyChecksum(_ h: [UInt8], at: Int64) throws {
        let stored = try number(h, 148, 8, "checksum", at: at)
        var unsigned = 0, signed = 0
        for (i, b) in h.enumerated() {
            let v = (148..<156).contains(i) ? 0x20 : b
            unsigned += Int(v); signed += Int(Int8(bitPattern: v))
        }
        guard stored == Int64(unsigned) || stored == Int64(signed) else {
            throw TarError(.badChecksum, offset: at, "header checksum \(stored) does not match its bytes (\(unsigned)); the archive is corrupt")
        }
    }

    /// Bytes of a NUL-terminated field.
    private func field(_ h: [UInt8], _ start: Int, _ len: Int) -> [UInt8] {
        let f = h[start..<start + len]
        return Array(f.prefix { $0 != 0 })
    }

    /// A numeric field: octal (leading spaces, digits, then NUL/space padding), or GNU
    /// base-256 (first byte 0x80 positive, 0xff negative).
    private func number(_ h: [UInt8], _ start: Int, _ len: Int, _ name: String, at: Int64) throws -> Int64 {
        let f = Array(h[start..<start + len])
        if f[0] & 0x80 != 0 {
            guard f[0] == 0x80 || f[0] == 0xff else { throw TarError(.malformedHeader, offset: at, "\(name) field is not a number") }
            var v: Int64 = f[0] == 0xff ? -1 : 0
            for b in f[1...] {
                guard v >= Int64.min >> 8, v <= Int64.max >> 8 else { throw TarError(.malformedHeader, offset: at, "\(name) field out of range") }
                v = (v << 8) | Int64(b)
            }
            return v
        }
        var i = 0
        while i < len && f[i] == 0x20 { i += 1 }
        var v: Int64 = 0, digits = 0
        while i < len, f[i] >= 0x30 && f[i] <= 0x37 {
            guard v <= Int64.max >> 3 else { throw TarError(.malformedHeader, offset: at, "\(name) field out of range") }
            v = v << 3 | Int64(f[i] - 0x30); i += 1; digits += 1
        }
        while i < len && (f[i] == 0 || f[i] == 0x20) { i += 1 }
        guard i == len else { throw TarError(.malformedHeader, offset: at, "\(name) field is not an octal number") }
        if digits == 0 && name == "checksum" { throw TarError(.malformedHeader, offset: at, "checksum field is empty") }
        return v
    }

    /// Parses pax records "LEN KEY=VALUE\n". Later records override earlier ones.
    private func readPax(size: Int64, at: Int64) throws -> [String: [UInt8]] {
        guard size <= Int64(limits.maxPaxHeaderBytes) else {
            throw TarError(.limitExceeded, offset: at, "pax header of \(size) bytes exceeds \(limits.maxPaxHeaderBytes)")
        }
        let data = try readExact(Int(size), what: "a pax extended header")
        try skip(Int64(padding(size)), what: "padding")
        var out = [String: [UInt8]]()
        var pos = 0
        while pos < data.count {
            var len = 0, p = pos
            while p < data.count, data[p] >= 0x30 && data[p] <= 0x39, p - pos < 8 {
                len = len * 10 + Int(data[p] - 0x30); p += 1
            }
            guard p > pos, p < data.count, data[p] == 0x20, data[pos] != 0x30 || p == pos + 1 else {
                throw TarError(.malformedHeader, offset: at, "pax record length is not a decimal number followed by a space")
            }
            guard len > p - pos + 1, pos + len <= data.count, data[pos + len - 1] == 0x0a else {
                throw TarError(.malformedHeader, offset: at, "pax record length \(len) does not fit the header or the record does not end with a newline")
            }
            let rec = data[(p + 1)..<(pos + len - 1)]
            guard let eq = rec.firstIndex(of: 0x3d), eq > rec.startIndex else {
                throw TarError(.malformedHeader, offset: at, "pax record without 'key='")
            }
            guard let key = String(validating: data[rec.startIndex..<eq], as: UTF8.self), !key.contains("\u{0}") else {
                throw TarError(.malformedHeader, offset: at, "pax record key is not UTF-8")
            }
            out[key] = Array(data[(eq + 1)..<rec.endIndex])
            pos += len
        }
        return out
    }

    /// A pax time: [-]digits[.digits], nanoseconds truncated.
    private func paxTime(_ v: [UInt8], at: Int64) throws -> (Int64, UInt32) {
        var s = v[...]
        let negative = s.first == 0x2d
        if negative { s = s.dropFirst() }
        let parts = s.split(separator: 0x2e, maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.count <= 18, whole.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              parts.count == 1 || (!parts[1].isEmpty && parts[1].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })) else {
            throw TarError(.malformedHeader, offset: at, "pax mtime is not a decimal time")
        }
        var sec = Int64(String(decoding: whole, as: UTF8.self))!
        var ns: Int64 = 0
        if parts.count == 2 {
            let frac = Array(parts[1].prefix(9)) + Array(repeating: UInt8(0x30), count: max(0, 9 - parts[1].count))
            ns = Int64(String(decoding: frac, as: UTF8.self))!
        }
        if negative {
            sec = -sec
            if ns > 0 { sec -= 1; ns = 1_000_000_000 - ns }
        }
        return (sec, UInt32(ns))
    }
}

/// A `ByteSource` over a file descriptor (a file, a pipe, standard input).
public final class FileByteSource: ByteSource {
    private let fd: Int32
    private let owned: Bool

    /// Reads `fd`; closes it at deinit only when `closeOnDeinit`.
    public init(fd: Int32, closeOnDeinit: Bool = false) { self.fd = fd; self.owned = closeOnDeinit }

    /// Opens `path` for reading.
    public init(path: String) throws {
        let f = open(path, O_RDONLY | O_CLOEXEC)
        guard f >= 0 else { throw DatasetError.source("cannot read \(path): \(String(cString: strerror(errno)))") }
        fd = f; owned = true
    }

    deinit { if owned { close(fd) } }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress!, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw DatasetError.source("cannot read the archive: \(String(cString: strerror(errno)))")
        }
    }
}
