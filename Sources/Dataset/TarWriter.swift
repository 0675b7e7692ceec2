// A deterministic, streaming writer of a directory as a POSIX pax tar archive.
import Envelope
#if canImport(Glibc)
import Glibc
#endif

/// Streams a directory tree as a tar archive (POSIX ustar headers, pax extended headers
/// where ustar cannot say it), one `read` at a time: what `Packer.pack(tar:)` and the
/// Privacy Plane read. See docs/tar.md.
///
/// The tree is scanned at init (names, sizes and metadata only, as `pack(source:)` does),
/// so the archive's exact length is known before the first byte (`archiveSize`, for an
/// HTTP Content-Length). Deterministic: entries in bytewise name order, a directory before
/// its children, the root itself omitted; uid/gid 0 and no user or group names. A pax
/// header carries `path` (over 100 bytes, or not UTF-8 with `hdrcharset=BINARY`),
/// `linkpath` (over 100 bytes), `size` (8 GiB and over) and `mtime` (nanoseconds, or
/// outside the octal field), so nothing is lost: packing the archive gives the same
/// tree as packing the directory. Regular files, directories and symlinks only;
/// anything else is refused at init. A file that changes size while it is streamed
/// fails the read (its header already went out).
public final class TarWriter: ByteSource {
    struct Item {
        enum Kind { case file(size: Int64), directory, symlink([UInt8]) }
        let rel: [UInt8]
        let path: [UInt8]
        let kind: Kind
        let mode: UInt16
        let mtime: (Int64, UInt32)
    }

    private var items = [Item]()
    /// The archive's exact length in bytes.
    public private(set) var archiveSize: Int64 = 0
    /// Bytes handed out so far.
    public private(set) var bytesRead: Int64 = 0
    /// Regular files and their total size.
    public private(set) var fileCount = 0
    public private(set) var contentBytes: Int64 = 0

    private var next = 0
    private var pending = [UInt8]()
    private var pendingPos = 0
    private var fd: Int32 = -1
    private var fileRemaining: Int64 = 0
    private var filePadding = 0
    private var currentPath = [UInt8]()
    private var ended = false

    /// Scans `directory` (which must be a directory; symlinks in it are not followed).
    public init(directory: String) throws {
        var root = Array(directory.utf8)
        while root.count > 1 && root.last == 0x2f { root.removeLast() }
        var st = stat()
        guard Packer.withCPath(root, { stat($0, &st) }) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw DatasetError.source("\(directory) is not a readable directory")
        }
        try scan(root, rel: [])
        archiveSize = 1024
        for it in items { archiveSize += Int64(try headers(it).count) }
        for it in items { if case .file(let s) = it.kind { archiveSize += Self.padded(s); fileCount += 1; contentBytes += s } }
    }

    deinit { if fd >= 0 { close(fd) } }

    static func padded(_ n: Int64) -> Int64 { (n + 511) / 512 * 512 }

    private func scan(_ dir: [UInt8], rel: [UInt8]) throws {
        guard let d = Packer.withCPath(dir, { opendir($0) }) else {
            throw DatasetError.source("cannot list \(Packer.display(dir)): \(String(cString: strerror(errno)))")
        }
        var names = [[UInt8]]()
        while let ent = readdir(d) {
            let n = withUnsafeBytes(of: ent.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if n == [0x2e] || n == [0x2e, 0x2e] { continue }
            names.append(n)
        }
        closedir(d)
        names.sort { $0.lexicographicallyPrecedes($1) }
        for n in names {
            let path = dir + [0x2f] + n
            let r = Packer.join(rel, n)
            var st = stat()
            guard Packer.withCPath(path, { lstat($0, &st) }) == 0 else {
                throw DatasetError.source("cannot read \(Packer.display(path)): \(String(cString: strerror(errno)))")
            }
            let mode = UInt16(st.st_mode & 0o7777)
            let mtime = (Int64(st.st_mtim.tv_sec), UInt32(st.st_mtim.tv_nsec))
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                items.append(Item(rel: r, path: path, kind: .file(size: Int64(st.st_size)), mode: mode, mtime: mtime))
            case S_IFDIR:
                items.append(Item(rel: r, path: path, kind: .directory, mode: mode, mtime: mtime))
                try scan(path, rel: r)
            case S_IFLNK:
                var buf = [UInt8](repeating: 0, count: DirectoryLimits.maxSymlinkTarget + 1)
                let k = Packer.withCPath(path) { p in buf.withUnsafeMutableBufferPointer { readlink(p, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count) } }
                guard k > 0, k <= DirectoryLimits.maxSymlinkTarget else {
                    throw DatasetError.source("cannot archive symlink \(Packer.display(path)): target unreadable or longer than \(DirectoryLimits.maxSymlinkTarget) bytes")
                }
                items.append(Item(rel: r, path: path, kind: .symlink(Array(buf[0..<k])), mode: mode, mtime: mtime))
            default:
                throw DatasetError.source("cannot archive \(Packer.display(path)): only regular files, directories and symlinks can be pushed (remove it or push a copy without it)")
            }
        }
    }

    // MARK: headers

    /// The header blocks of an item: an optional pax header, then the ustar header.
    func headers(_ it: Item) throws -> [UInt8] {
        var pax = [(String, [UInt8])]()
        var name = it.rel
        if case .directory = it.kind { name += [0x2f] }
        let utf8 = String(validating: name, as: UTF8.self) != nil
        if name.count > 100 || !utf8 {
            if !utf8 { pax.append(("hdrcharset", Array("BINARY".utf8))) }
            pax.append(("path", name))
        }
        var link = [UInt8]()
        var size: Int64 = 0
        let type: UInt8
        switch it.kind {
        case .file(let s):
            type = UInt8(ascii: "0"); size = s
            if s >= 0o77777777777 { pax.append(("size", Array(String(s).utf8))) }
        case .directory: type = UInt8(ascii: "5")
        case .symlink(let t):
            type = UInt8(ascii: "2"); link = t
            if t.count > 100 || String(validating: t, as: UTF8.self) == nil { pax.append(("linkpath", t)) }
        }
        if it.mtime.1 != 0 || it.mtime.0 < 0 || it.mtime.0 >= 0o77777777777 {
            let (sec, nsec) = it.mtime
            // pax times are decimal: -1.5 is 1.5 s before the epoch (sec -2, nsec 5e8).
            let whole = sec >= 0 ? String(sec) : "-" + String(nsec == 0 ? -sec : -sec - 1)
            var frac = nsec == 0 ? "" : String(sec >= 0 ? Int(nsec) : 1_000_000_000 - Int(nsec))
            if !frac.isEmpty { frac = String(repeating: "0", count: 9 - frac.count) + frac }
            while frac.last == "0" { frac.removeLast() }
            pax.append(("mtime", Array((frac.isEmpty ? whole : whole + "." + frac).utf8)))
        }
        var out = [UInt8]()
        if !pax.isEmpty {
            var body = [UInt8]()
            for (k, v) in pax { body += Self.paxRecord(k, v) }
            out += Self.ustar(name: Array("PaxHeader".utf8) + Array(name.prefix(80)).filter { $0 != 0 }, mode: 0o644, size: Int64(body.count),
                              mtime: 0, type: UInt8(ascii: "x"), link: [])
            out += body
            out += [UInt8](repeating: 0, count: Int(Self.padded(Int64(body.count))) - body.count)
        }
        let mtimeField = it.mtime.0 < 0 ? 0 : min(it.mtime.0, 0o77777777777)
        out += Self.ustar(name: Array(name.prefix(100)), mode: it.mode, size: size >= 0o77777777777 ? 0 : size,
                          mtime: mtimeField, type: type, link: Array(link.prefix(100)))
        return out
    }

    /// "LEN key=value\n", LEN counting itself.
    static func paxRecord(_ key: String, _ value: [UInt8]) -> [UInt8] {
        let rest = 1 + key.utf8.count + 1 + value.count + 1
        var len = rest + 1
        while String(len).count + rest != len { len = String(len).count + rest }
        return Array("\(len) \(key)=".utf8) + value + [0x0a]
    }

    static func ustar(name: [UInt8], mode: UInt16, size: Int64, mtime: Int64, type: UInt8, link: [UInt8]) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], _ at: Int) { for (i, b) in bytes.enumerated() { h[at + i] = b } }
        func octal(_ v: Int64, _ at: Int, _ width: Int) {
            var s = String(v, radix: 8)
            s = String(repeating: "0", count: max(0, width - 1 - s.count)) + s
            put(Array(s.utf8), at)
        }
        put(name, 0)
        octal(Int64(mode), 100, 8); octal(0, 108, 8); octal(0, 116, 8)
        octal(size, 124, 12); octal(mtime, 136, 12)
        h[156] = type
        put(link, 157)
        put(Array("ustar\0".utf8), 257); put(Array("00".utf8), 263)
        octal(0, 329, 8); octal(0, 337, 8)
        put(Array("        ".utf8), 148)
        let sum = h.reduce(0) { $0 + Int($1) }
        var c = String(sum, radix: 8); c = String(repeating: "0", count: max(0, 6 - c.count)) + c
        put(Array(c.utf8) + [0, 0x20], 148)
        return h
    }

    // MARK: streaming

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        while true {
            if pendingPos < pending.count {
                let n = min(buffer.count, pending.count - pendingPos)
                pending.withUnsafeBytes { p in buffer.baseAddress!.copyMemory(from: p.baseAddress! + pendingPos, byteCount: n) }
                pendingPos += n
                bytesRead += Int64(n)
                return n
            }
            if fd >= 0 {
                if fileRemaining > 0 {
                    let want = Int(min(Int64(buffer.count), fileRemaining))
                    let n = Glibc.read(fd, buffer.baseAddress!, want)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw DatasetError.source("cannot read \(Packer.display(currentPath)): \(String(cString: strerror(errno)))")
                    }
                    guard n > 0 else { throw DatasetError.source("\(Packer.display(currentPath)) shrank while it was being archived; push a stable copy") }
                    fileRemaining -= Int64(n)
                    bytesRead += Int64(n)
                    return n
                }
                // The file must end exactly where its header said.
                var probe: UInt8 = 0
                let extra = Glibc.read(fd, &probe, 1)
                close(fd); fd = -1
                guard extra == 0 else { throw DatasetError.source("\(Packer.display(currentPath)) grew while it was being archived; push a stable copy") }
                setPending([UInt8](repeating: 0, count: filePadding))
                continue
            }
            if next < items.count {
                let it = items[next]; next += 1
                setPending(try headers(it))
                if case .file(let s) = it.kind {
                    let f = Packer.withCPath(it.path) { open($0, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
                    guard f >= 0 else { throw DatasetError.source("cannot read \(Packer.display(it.path)): \(String(cString: strerror(errno)))") }
                    fd = f; fileRemaining = s; filePadding = Int(Self.padded(s) - s); currentPath = it.path
                }
                continue
            }
            if !ended {
                ended = true
                setPending([UInt8](repeating: 0, count: 1024))
                continue
            }
            return 0
        }
    }

    private func setPending(_ b: [UInt8]) { pending = b; pendingPos = 0 }
}
