import Dataset
import Envelope
import Foundation
import ObjectStore
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: helpers

/// What a tree (on disk or in an archive) holds, comparable across the two.
struct TreeItem: Equatable, CustomStringConvertible {
    var path: String
    var kind: String
    var size: Int64
    var mode: UInt16
    var mtime: Int64
    var nanos: UInt32
    var detail: String  // content SHA-256 or symlink target
    var description: String { "\(kind) \(path) size=\(size) mode=\(String(mode, radix: 8)) mtime=\(mtime).\(nanos) \(detail)" }
}

func sortedByPath(_ items: [TreeItem]) -> [TreeItem] { items.sorted { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) } }

/// Walks a directory with lstat, sorted by path bytes, the root omitted.
func walk(_ root: String) throws -> [TreeItem] { sortedByPath(try walkTree(root)) }

func walkTree(_ root: String, rel: String = "") throws -> [TreeItem] {
    var out = [TreeItem]()
    let names = try FileManager.default.contentsOfDirectory(atPath: root + (rel.isEmpty ? "" : "/" + rel)).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    for n in names {
        let r = rel.isEmpty ? n : rel + "/" + n
        let p = root + "/" + r
        var st = stat()
        guard lstat(p, &st) == 0 else { throw TestFailure("lstat \(p)") }
        let mode = UInt16(st.st_mode & 0o7777)
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            out.append(TreeItem(path: r, kind: "dir", size: 0, mode: mode, mtime: Int64(st.st_mtim.tv_sec), nanos: UInt32(st.st_mtim.tv_nsec), detail: ""))
            out += try walkTree(root, rel: r)
        case S_IFLNK:
            let t = try FileManager.default.destinationOfSymbolicLink(atPath: p)
            out.append(TreeItem(path: r, kind: "symlink", size: 0, mode: mode, mtime: Int64(st.st_mtim.tv_sec), nanos: UInt32(st.st_mtim.tv_nsec), detail: t))
        default:
            out.append(TreeItem(path: r, kind: "file", size: Int64(st.st_size), mode: mode, mtime: Int64(st.st_mtim.tv_sec), nanos: UInt32(st.st_mtim.tv_nsec),
                                detail: SHA256Digest.hash(try readFile(p)).hex))
        }
    }
    return out
}

/// Reads a whole archive with TarReader (content hashed), in path order.
func readArchive(_ source: any ByteSource, limits: TarLimits = TarLimits(), bufferSize: Int = 64 << 10) throws -> [TreeItem] {
    let r = TarReader(source, limits: limits, bufferSize: bufferSize)
    var out = [TreeItem]()
    var buf = [UInt8](repeating: 0, count: 7919)  // odd size: chunks straddle blocks
    while let e = try r.next() {
        let path = String(decoding: e.path, as: UTF8.self)
        if e.components.isEmpty { continue }
        switch e.kind {
        case .directory:
            out.append(TreeItem(path: path, kind: "dir", size: 0, mode: e.mode, mtime: e.mtimeSeconds, nanos: e.mtimeNanoseconds, detail: ""))
        case .symlink(let t):
            out.append(TreeItem(path: path, kind: "symlink", size: 0, mode: e.mode, mtime: e.mtimeSeconds, nanos: e.mtimeNanoseconds, detail: String(decoding: t, as: UTF8.self)))
        case .file(let size):
            var content = [UInt8]()
            while true {
                let n = try buf.withUnsafeMutableBytes { try r.readContent(into: $0) }
                if n == 0 { break }
                content += buf[0..<n]
            }
            #expect(Int64(content.count) == size)
            out.append(TreeItem(path: path, kind: "file", size: size, mode: e.mode, mtime: e.mtimeSeconds, nanos: e.mtimeNanoseconds, detail: SHA256Digest.hash(content).hex))
        }
    }
    return sortedByPath(out)
}

/// A tree exercising every header feature: sizes around the 512-byte block, long names
/// (GNU 'L' / pax path), long symlink targets ('K' / pax linkpath), UTF-8, deep paths,
/// empty directories, odd modes and nanosecond mtimes. `ustarSafe` keeps names within
/// what plain ustar can say (a 100-byte name and a 155-byte prefix).
func makeInteropTree(_ root: String, ustarSafe: Bool) throws {
    var rng = SeededGenerator(seed: 7)
    for (i, s) in [0, 1, 511, 512, 513, 1024, 100_000].enumerated() { try writeFile(root + "/sizes/f\(i).bin", rng.bytes(s)) }
    try writeFile(root + "/données/résumé.txt", Array("é".utf8))
    let deep = (0..<4).map { "d\($0)-" + String(repeating: "x", count: 30) }.joined(separator: "/")
    try writeFile(root + "/" + deep + "/in-prefix.txt", Array("prefix".utf8))  // > 100 bytes: ustar prefix field
    try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: root + "/link", withDestinationPath: "sizes/f1.bin")
    try FileManager.default.createSymbolicLink(atPath: root + "/dangling", withDestinationPath: "../outside/never-followed")
    try writeFile(root + "/run.sh", Array("#!/bin/sh\n".utf8))
    chmod(root + "/run.sh", 0o750)
    chmod(root + "/sizes/f0.bin", 0o600)
    if !ustarSafe {
        try writeFile(root + "/long/" + String(repeating: "n", count: 200) + ".txt", Array("long name".utf8))
        let longDir = (0..<12).map { _ in String(repeating: "z", count: 40) }.joined(separator: "/")
        try writeFile(root + "/" + longDir + "/leaf", Array("long path".utf8))
        try FileManager.default.createSymbolicLink(atPath: root + "/longlink", withDestinationPath: String(repeating: "t/", count: 150) + "x")
    }
    // Nanosecond mtimes everywhere (directories last: creating children changes them).
    var ts = [timespec(tv_sec: 1_700_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_700_000_000, tv_nsec: 123_456_789)]
    for item in try walkTree(root).reversed() {
        ts[0].tv_nsec = Int(item.path.utf8.count % 1000) * 1_000_003 % 1_000_000_000
        ts[1] = ts[0]
        utimensat(AT_FDCWD, root + "/" + item.path, &ts, AT_SYMLINK_NOFOLLOW)
    }
}

func stripNanos(_ items: [TreeItem]) -> [TreeItem] { items.map { var i = $0; i.nanos = 0; return i } }
func stripSymlinkModes(_ items: [TreeItem]) -> [TreeItem] { items.map { var i = $0; if i.kind == "symlink" { i.mode = 0 }; return i } }

/// One ustar header block (checksum computed unless `checksum` is given).
func tarHeader(_ name: String, type: Character = "0", size: Int64 = 0, mode: Int = 0o644, mtime: Int64 = 1_700_000_000,
               link: String = "", prefix: String = "", magic: String = "ustar\u{0}00", checksum: Int? = nil, rawName: [UInt8]? = nil) -> [UInt8] {
    var h = [UInt8](repeating: 0, count: 512)
    func put(_ b: [UInt8], _ at: Int) { for (i, x) in b.enumerated() { h[at + i] = x } }
    func octal(_ v: Int64, _ at: Int, _ w: Int) { let s = String(v, radix: 8); put(Array((String(repeating: "0", count: max(0, w - 1 - s.count)) + s).utf8), at) }
    put(rawName ?? Array(name.utf8), 0)
    octal(Int64(mode), 100, 8); octal(0, 108, 8); octal(0, 116, 8); octal(size, 124, 12); octal(mtime, 136, 12)
    h[156] = type.asciiValue!
    put(Array(link.utf8), 157)
    put(Array(magic.utf8), 257)
    put(Array(prefix.utf8), 345)
    put(Array("        ".utf8), 148)
    let sum = checksum ?? h.reduce(0) { $0 + Int($1) }
    let c = String(sum, radix: 8)
    put(Array((String(repeating: "0", count: max(0, 6 - c.count)) + c).utf8) + [0, 0x20], 148)
    return h
}

func padBlock(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (512 - b.count % 512) % 512) }
func tarFile(_ name: String, _ content: [UInt8], mode: Int = 0o644) -> [UInt8] { tarHeader(name, size: Int64(content.count), mode: mode) + padBlock(content) }
func paxHeader(_ records: [(String, [UInt8])], type: Character = "x") -> [UInt8] {
    var body = [UInt8]()
    for (k, v) in records {
        let rest = 1 + k.utf8.count + 1 + v.count + 1
        var len = rest + 1
        while String(len).count + rest != len { len = String(len).count + rest }
        body += Array("\(len) \(k)=".utf8) + v + [0x0a]
    }
    return tarHeader("PaxHeader", type: type, size: Int64(body.count)) + padBlock(body)
}
func paxRaw(_ body: [UInt8]) -> [UInt8] { tarHeader("PaxHeader", type: "x", size: Int64(body.count)) + padBlock(body) }
let tarEnd = [UInt8](repeating: 0, count: 1024)

func expectTarError(_ code: TarError.Code, _ archive: [UInt8], limits: TarLimits = TarLimits(), _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try readArchive(BytesSource(archive), limits: limits)
        Issue.record("accepted; expected \(code): \(comment?.rawValue ?? "")", sourceLocation: sourceLocation)
    } catch let e as TarError {
        #expect(e.code == code, "\(comment?.rawValue ?? ""): \(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(comment?.rawValue ?? ""): not a TarError: \(error)", sourceLocation: sourceLocation)
    }
}

/// Every object file under a store directory: relative path → bytes.
func storeObjects(_ root: String) throws -> [String: [UInt8]] {
    var out = [String: [UInt8]]()
    guard let e = FileManager.default.enumerator(atPath: root) else { return out }
    while let p = e.nextObject() as? String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: root + "/" + p, isDirectory: &isDir), !isDir.boolValue, p.contains("/objects/") {
            out[p] = try readFile(root + "/" + p)
        }
    }
    return out
}

/// A tar stream generated on the fly: one file of `size` pseudo-random bytes (a 1 MiB
/// pattern, repeated at an odd period). Nothing is held in memory but the pattern.
final class SyntheticTar: ByteSource {
    static let period = 1_048_573
    static let pattern: [UInt8] = { var r = SeededGenerator(seed: 99); return r.bytes(period) }()
    let size: Int64
    var pos: Int64 = 0
    let header: [UInt8]
    init(size: Int64) { self.size = size; header = tarHeader("big.bin", size: size) }
    var total: Int64 { 512 + (size + 511) / 512 * 512 + 1024 }
    static func byte(at contentOffset: Int64) -> UInt8 { pattern[Int(contentOffset % Int64(period))] }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard pos < total, buffer.count > 0 else { return 0 }
        if pos < 512 {
            let n = min(buffer.count, 512 - Int(pos))
            header.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(pos), byteCount: n) }
            pos += Int64(n); return n
        }
        if pos < 512 + size {
            let c = pos - 512
            let off = Int(c % Int64(Self.period))
            let n = Int(min(Int64(buffer.count), 512 + size - pos, Int64(Self.period - off)))
            Self.pattern.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + off, byteCount: n) }
            pos += Int64(n); return n
        }
        let n = Int(min(Int64(buffer.count), total - pos))
        buffer.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: n)
        pos += Int64(n); return n
    }
}


// MARK: tests

@Suite("Tar archives")
struct TarTests {
    @Test("archives by Python tarfile (ustar, pax, gnu) and GNU tar (ustar, posix, gnu) read back exactly")
    func interop() throws {
        let dir = TempDir("cce4-tar")
        for safe in [true, false] {
            let src = dir.sub(safe ? "safe" : "full")
            try makeInteropTree(src, ustarSafe: safe)
            let expected = stripSymlinkModes(try walk(src))
            // Python tarfile: seconds (ustar, gnu) or float seconds (pax): compare seconds.
            for fmt in safe ? ["ustar", "pax", "gnu"] : ["pax", "gnu"] {
                let out = dir.sub("py-\(fmt)-\(safe).tar")
                let r = try run(Repo.python, [Repo.root + "/Tests/interop/tar_tool.py", "make", src, out, fmt])
                #expect(r.status == 0, "\(r.stderr)")
                let got = stripSymlinkModes(try readArchive(try FileByteSource(path: out)))
                #expect(stripNanos(got) == stripNanos(expected), "python \(fmt)")
            }
            // GNU tar: posix keeps nanoseconds.
            for fmt in safe ? ["ustar", "posix", "gnu"] : ["posix", "gnu"] {
                let out = dir.sub("gnu-\(fmt)-\(safe).tar")
                let r = try run("/usr/bin/tar", ["--format=\(fmt)", "-C", src, "-cf", out, "."])
                #expect(r.status == 0, "\(r.stderr)")
                let got = stripSymlinkModes(try readArchive(try FileByteSource(path: out)))
                #expect((fmt == "posix" ? got : stripNanos(got)) == (fmt == "posix" ? expected : stripNanos(expected)), "GNU tar \(fmt)")
            }
        }
    }

    @Test("GNU tar's hard links, sparse files (gnu and posix formats) and FIFOs are refused with unsupportedType")
    func gnuTarRefusals() throws {
        let dir = TempDir("cce4-tar-gnu-refuse")
        let src = dir.sub("src")
        try writeFile(src + "/a.txt", Array("a".utf8))
        #expect(link(src + "/a.txt", src + "/b.txt") == 0)
        let hard = dir.sub("hard.tar")
        #expect(try run("/usr/bin/tar", ["--format=posix", "-C", src, "-cf", hard, "."]).status == 0)
        expectTarError(.unsupportedType, try readFile(hard), "GNU tar hard link")
        #expect(unlink(src + "/b.txt") == 0)
        #expect(truncate(src + "/a.txt", 4 << 20) == 0)  // a hole: tar --sparse stores it sparse
        for fmt in ["gnu", "posix"] {
            let out = dir.sub("sparse-\(fmt).tar")
            let r = try run("/usr/bin/tar", ["--format=\(fmt)", "--sparse", "-C", src, "-cf", out, "."])
            #expect(r.status == 0, "\(r.stderr)")
            expectTarError(.unsupportedType, try readFile(out), "GNU tar --sparse --format=\(fmt)")
        }
        #expect(mkfifo(src + "/fifo", 0o600) == 0)
        let fifo = dir.sub("fifo.tar")
        #expect(try run("/usr/bin/tar", ["--format=posix", "-C", src, "-cf", fifo, "./fifo"]).status == 0)
        expectTarError(.unsupportedType, try readFile(fifo), "GNU tar FIFO")
    }

    @Test("TarWriter round trip: through TarReader (1-byte reads too) and Python tarfile, deterministic, exact size")
    func writerRoundTrip() throws {
        let dir = TempDir("cce4-tarw")
        let src = dir.sub("src")
        try makeInteropTree(src, ustarSafe: false)
        let expected = stripSymlinkModes(try walk(src))
        let w = try TarWriter(directory: src)
        var all = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 3001)
        while true {
            let n = try buf.withUnsafeMutableBytes { try w.read(into: $0) }
            if n == 0 { break }
            all += buf[0..<n]
        }
        #expect(Int64(all.count) == w.archiveSize)
        #expect(w.bytesRead == w.archiveSize)
        #expect(all.count % 512 == 0)
        #expect(stripSymlinkModes(try readArchive(BytesSource(all))) == expected)
        #expect(stripSymlinkModes(try readArchive(BytesSource(all, maxRead: 1), bufferSize: 512)) == expected)
        // Deterministic: a second writer gives the same bytes.
        let w2 = try TarWriter(directory: src)
        var again = [UInt8]()
        while true {
            let n = try buf.withUnsafeMutableBytes { try w2.read(into: $0) }
            if n == 0 { break }
            again += buf[0..<n]
        }
        #expect(bytesEqual(all, again))
        // Python's tarfile reads it: names, kinds, sizes, modes, contents, link targets, mtimes.
        try writeFile(dir.sub("w.tar"), all)
        let r = try run(Repo.python, [Repo.root + "/Tests/interop/tar_tool.py", "list", dir.sub("w.tar")])
        #expect(r.status == 0, "\(r.stderr)")
        let members = try JSONSerialization.jsonObject(with: r.stdout) as! [[String: Any]]
        var py = [TreeItem]()
        for m in members {
            let name = (m["name"] as! String)
            let kind = m["type"] as! String
            let mt = Double(m["mtime"] as! String)!
            let isLink = kind == "symlink"
            py.append(TreeItem(path: name, kind: kind, size: kind == "file" ? (m["size"] as! NSNumber).int64Value : 0,
                               mode: isLink ? 0 : UInt16((m["mode"] as! NSNumber).intValue), mtime: Int64(mt.rounded(.down)), nanos: 0,
                               detail: kind == "file" ? m["sha256"] as! String : kind == "symlink" ? m["linkname"] as! String : ""))
        }
        py = sortedByPath(py)
        #expect(py == stripNanos(expected))
    }

    @Test("names that are not UTF-8, negative and pre-epoch mtimes survive the writer and reader")
    func writerOddities() throws {
        let dir = TempDir("cce4-tarw2")
        let src = dir.sub("src")
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        let raw: [UInt8] = Array(src.utf8) + Array("/bin\u{7f}".utf8) + [0xff, 0xfe]
        let fd = Packerless.create(raw)
        #expect(fd >= 0)
        close(fd)
        try writeFile(src + "/old", [1, 2, 3])
        var ts = [timespec(tv_sec: -2, tv_nsec: 500_000_000), timespec(tv_sec: -2, tv_nsec: 500_000_000)]
        utimensat(AT_FDCWD, src + "/old", &ts, 0)
        let w = try TarWriter(directory: src)
        let r = TarReader(w)
        var names = [[UInt8]]()
        while let e = try r.next() {
            names.append(e.path)
            if e.path == Array("old".utf8) {
                #expect(e.mtimeSeconds == -2)
                #expect(e.mtimeNanoseconds == 500_000_000)
            }
        }
        #expect(names == [Array("bin\u{7f}".utf8) + [0xff, 0xfe], Array("old".utf8)])
    }

    @Test("hostile and malformed archives are refused with the right TarError")
    func hostile() throws {
        let ok = tarFile("a.txt", [1, 2, 3]) + tarEnd
        #expect(try readArchive(BytesSource(ok)).count == 1)
        // Accepted shapes: the root entry, implicit parents, record padding, GNU base-256 size.
        #expect(try readArchive(BytesSource(tarHeader("./", type: "5") + tarFile("./x/y/z", [9]) + tarEnd + [UInt8](repeating: 0, count: 8192))).count == 1)
        var b256 = tarHeader("big", size: 0)
        b256[124] = 0x80; for i in 125..<136 { b256[i] = 0 }; b256[135] = 3
        b256.replaceSubrange(148..<156, with: Array("        ".utf8))
        let sum = String(b256.reduce(0) { $0 + Int($1) }, radix: 8)
        b256.replaceSubrange(148..<156, with: Array((String(repeating: "0", count: 6 - sum.count) + sum).utf8) + [0, 0x20])
        #expect(try readArchive(BytesSource(b256 + padBlock([1, 2, 3]) + tarEnd)).first?.size == 3)

        var bad = ok; bad[0] ^= 1
        expectTarError(.badChecksum, bad, "flipped name byte")
        expectTarError(.badChecksum, tarHeader("a", checksum: 12345) + tarEnd, "wrong checksum")
        expectTarError(.unsafeName, tarFile("/etc/passwd", [1]) + tarEnd, "absolute")
        expectTarError(.unsafeName, tarFile("a/../b", [1]) + tarEnd, "dot-dot")
        expectTarError(.unsafeName, tarFile("../b", [1]) + tarEnd, "leading dot-dot")
        expectTarError(.unsafeName, tarFile("a//b", [1]) + tarEnd, "empty component")
        expectTarError(.unsafeName, tarFile("a/./b", [1]) + tarEnd, "dot component")
        expectTarError(.unsafeName, tarFile("a/", [1]) + tarEnd, "file with a trailing slash")
        expectTarError(.unsafeName, tarFile("./", [1]) + tarEnd, "file named as the root")
        expectTarError(.unsafeName, paxHeader([("path", Array("a\u{0}b".utf8))]) + tarFile("x", [1]) + tarEnd, "NUL in pax path")
        expectTarError(.unsafeName, paxHeader([("path", Array(repeating: 0x61, count: 256))]) + tarFile("x", [1]) + tarEnd, "256-byte component")
        expectTarError(.duplicate, tarFile("a", [1]) + tarFile("./a", [2]) + tarEnd, "same file twice")
        expectTarError(.duplicate, tarFile("a", [1]) + tarFile("a/b", [2]) + tarEnd, "path under a file")
        expectTarError(.duplicate, tarHeader("d/", type: "5") + tarHeader("d", type: "5") + tarEnd, "directory twice")
        expectTarError(.unsupportedType, tarHeader("h", type: "1", link: "a.txt") + tarEnd, "hard link")
        expectTarError(.unsupportedType, tarHeader("c", type: "3") + tarEnd, "character device")
        expectTarError(.unsupportedType, tarHeader("b", type: "4") + tarEnd, "block device")
        expectTarError(.unsupportedType, tarHeader("f", type: "6") + tarEnd, "FIFO")
        expectTarError(.unsupportedType, tarHeader("s", type: "S", magic: "ustar  \u{0}") + tarEnd, "GNU sparse")
        expectTarError(.unsupportedType, paxHeader([("GNU.sparse.size", Array("10".utf8))]) + tarFile("s", [1]) + tarEnd, "pax sparse")
        expectTarError(.unsupportedType, tarHeader("v", type: "V") + tarEnd, "volume label")
        expectTarError(.unsupportedType, tarHeader("z", type: "Z") + tarEnd, "unknown type")
        expectTarError(.truncated, tarFile("a", [1]), "no end blocks")
        expectTarError(.truncated, tarFile("a", [1]) + [UInt8](repeating: 0, count: 512), "one end block")
        expectTarError(.truncated, Array(ok.prefix(600)), "inside the content")
        expectTarError(.truncated, Array(ok.prefix(300)), "inside a header")
        expectTarError(.truncated, [], "empty stream")
        expectTarError(.trailingGarbage, ok + [0, 0, 7], "garbage after the end")
        expectTarError(.malformedHeader, tarFile("a", [1]) + [UInt8](repeating: 0, count: 512) + tarFile("b", [2]) + tarEnd, "lone zero block")
        expectTarError(.malformedHeader, tarHeader("v7", magic: "") + tarEnd, "v7 header")
        expectTarError(.malformedHeader, tarHeader("l", type: "2") + tarEnd, "symlink without a target")
        expectTarError(.unsafeName, paxHeader([("linkpath", Array("a\u{0}b".utf8))]) + tarHeader("l", type: "2") + tarEnd, "NUL in a link target")
        expectTarError(.malformedHeader, tarHeader("d/", type: "5", size: 5) + padBlock([1, 2, 3, 4, 5]) + tarEnd, "directory with a size")
        expectTarError(.malformedHeader, paxRaw(Array("99 path=x\n".utf8)) + tarFile("a", [1]) + tarEnd, "pax length too long")
        expectTarError(.malformedHeader, paxRaw(Array("8 pathx\n".utf8)) + tarFile("a", [1]) + tarEnd, "pax record without =")
        expectTarError(.malformedHeader, paxRaw(Array("x path=x\n".utf8)) + tarFile("a", [1]) + tarEnd, "pax length not a number")
        expectTarError(.malformedHeader, paxHeader([("mtime", Array("12a".utf8))]) + tarFile("a", [1]) + tarEnd, "pax mtime")
        expectTarError(.malformedHeader, paxHeader([("size", Array("-1".utf8))]) + tarFile("a", [1]) + tarEnd, "pax size")
        expectTarError(.malformedHeader, paxHeader([("path", Array("a".utf8))]) + tarEnd, "pax header then end")
        expectTarError(.malformedHeader, paxHeader([("path", Array("a".utf8))]) + paxHeader([("path", Array("b".utf8))]) + tarFile("c", [1]) + tarEnd, "two pax headers")
        expectTarError(.malformedHeader, paxHeader([("path", Array("a".utf8))], type: "g") + tarFile("c", [1]) + tarEnd, "global path")
        var nonOctal = tarHeader("a", size: 1); nonOctal.replaceSubrange(124..<136, with: Array("00000000009\u{0}".utf8))
        let s2 = String(nonOctal.enumerated().reduce(0) { $0 + Int((148..<156).contains($1.offset) ? 0x20 : $1.element) }, radix: 8)
        nonOctal.replaceSubrange(148..<156, with: Array((String(repeating: "0", count: 6 - s2.count) + s2).utf8) + [0, 0x20])
        expectTarError(.malformedHeader, nonOctal + padBlock([1]) + tarEnd, "size not octal")

        var l = TarLimits(); l.maxEntries = 2
        expectTarError(.limitExceeded, tarFile("a", [1]) + tarFile("b", [1]) + tarFile("c", [1]) + tarEnd, limits: l, "entries")
        l = TarLimits(); l.maxNameBytes = 10
        expectTarError(.limitExceeded, tarFile("abcdefghijk", [1]) + tarEnd, limits: l, "name bytes")
        l = TarLimits(); l.maxTotalNameBytes = 20
        expectTarError(.limitExceeded, tarFile("abcdefghij", [1]) + tarFile("klmnopqrstu", [1]) + tarEnd, limits: l, "total name bytes")
        l = TarLimits(); l.maxDepth = 2
        expectTarError(.limitExceeded, tarFile("a/b/c", [1]) + tarEnd, limits: l, "depth")
        l = TarLimits(); l.maxFileBytes = 10
        expectTarError(.limitExceeded, tarFile("a", [UInt8](repeating: 1, count: 11)) + tarEnd, limits: l, "file bytes")
        l = TarLimits(); l.maxTotalBytes = 15
        expectTarError(.limitExceeded, tarFile("a", [UInt8](repeating: 1, count: 10)) + tarFile("b", [UInt8](repeating: 1, count: 10)) + tarEnd, limits: l, "total bytes")
        l = TarLimits(); l.maxPaxHeaderBytes = 100
        expectTarError(.limitExceeded, paxHeader([("comment", [UInt8](repeating: 0x61, count: 200))]) + tarFile("a", [1]) + tarEnd, limits: l, "pax bytes")
        l = TarLimits(); l.maxTrailingZeroBytes = 512
        expectTarError(.limitExceeded, ok + [UInt8](repeating: 0, count: 1024), limits: l, "trailing zeros")
        // A GNU 'L' record longer than a name may be.
        l = TarLimits(); l.maxNameBytes = 50
        let longL = tarHeader("././@LongLink", type: "L", size: 100, magic: "ustar  \u{0}") + padBlock([UInt8](repeating: 0x61, count: 100))
        expectTarError(.limitExceeded, longL + tarFile("a", [1]) + tarEnd, limits: l, "GNU long name")
    }

    @Test("pack(tar:) gives the same objects and root as pack(source:) for the demo data (GNU tar posix, TarWriter)")
    func sameAsSource() throws {
        let dir = TempDir("cce4-tar-demo")
        let src = dir.sub("demo")
        let r = try run(Repo.python, [Repo.root + "/scripts/make_demo_data.py", src])
        #expect(r.status == 0, "\(r.stderr)")
        let key = try SecureBytes.random(count: 32)
        var options = PackOptions()
        options.deterministicSeed = Array("same-as-source".utf8)
        options.partSize = 64 << 10  // the demo's larger files go as parts
        options.parameters = try StreamParameters(segmentSize: 4096)
        func packer(_ name: String) throws -> Packer {
            try Packer(store: try FileObjectStore(root: dir.sub(name), create: true), datasetID: "demo", key: key, options: options)
        }
        let fromSource = try packer("s1").pack(source: src)
        #expect(fromSource.files >= 7)
        let tarPath = dir.sub("demo.tar")
        let t = try run("/usr/bin/tar", ["--format=posix", "-C", src, "-cf", tarPath, "."])
        #expect(t.status == 0, "\(t.stderr)")
        let fromGNU = try packer("s2").pack(tar: try FileByteSource(path: tarPath))
        let fromWriter = try packer("s3").pack(tar: try TarWriter(directory: src))
        #expect(fromGNU.root == fromSource.root)
        #expect(fromWriter.root == fromSource.root)
        #expect(fromGNU.files == fromSource.files && fromGNU.directories == fromSource.directories && fromGNU.symlinks == fromSource.symlinks)
        #expect(fromGNU.plaintextBytes == fromSource.plaintextBytes && fromGNU.ciphertextBytes == fromSource.ciphertextBytes)
        let a = try storeObjects(dir.sub("s1")), b = try storeObjects(dir.sub("s2")), c = try storeObjects(dir.sub("s3"))
        #expect(a.count > 10)
        #expect(a.keys.sorted() == b.keys.sorted() && a.keys.sorted() == c.keys.sorted())
        for (k, v) in a { #expect(bytesEqual(v, b[k] ?? []) && bytesEqual(v, c[k] ?? []), "object \(k)") }
        // And it reads back.
        let reader = try DatasetReader(store: try FileObjectStore(root: dir.sub("s2"), create: false), datasetID: "demo", root: fromGNU.root, key: key)
        guard case .entry(let e, _) = try reader.resolve("cohort/participants.csv"), case .file(let f) = e.target else { throw TestFailure("no participants.csv") }
        #expect(bytesEqual(try reader.open(f).read(0..<f.size), try readFile(src + "/cohort/participants.csv")))
    }

    @Test("a failed pack(tar:) leaves no file objects behind, and reports the archive's error")
    func failedPackCleansUp() throws {
        let dir = TempDir("cce4-tar-fail")
        let store = try FileObjectStore(root: dir.sub("store"), create: true)
        var rng = SeededGenerator(seed: 3)
        var archive = [UInt8]()
        for i in 0..<20 { archive += tarFile("f\(i).bin", rng.bytes(3000 + i * 1000)) }
        archive += tarHeader("h", type: "1", link: "f0.bin") + tarEnd
        var options = PackOptions(); options.concurrency = 3
        let p = try Packer(store: store, datasetID: "ds", key: try SecureBytes.random(count: 32), options: options)
        #expect(throws: TarError.self) { try p.pack(tar: BytesSource(archive, maxRead: 777)) }
        #expect(try storeObjects(dir.sub("store")).isEmpty)
        // Truncated in the middle of a file: the same.
        #expect(throws: TarError.self) { try p.pack(tar: BytesSource(Array(archive.prefix(30_000)))) }
        #expect(try storeObjects(dir.sub("store")).isEmpty)
    }

    @Test("seeded mutation fuzz: thousands of mutated archives never crash; a TarError or a valid result")
    func fuzz() throws {
        let dir = TempDir("cce4-tar-fuzz")
        let src = dir.sub("src")
        try makeInteropTree(src, ustarSafe: false)
        var seeds = [[UInt8]]()
        for fmt in ["pax", "gnu"] {
            let out = dir.sub("\(fmt).tar")
            #expect(try run(Repo.python, [Repo.root + "/Tests/interop/tar_tool.py", "make", src, out, fmt]).status == 0)
            seeds.append(try readFile(out))
        }
        seeds.append(Array(tarHeader("./", type: "5") + paxHeader([("path", Array("p/q".utf8)), ("mtime", Array("1.5".utf8))]) + tarFile("x", [1, 2])
                           + tarHeader("l", type: "2", link: "x") + tarEnd))
        var rng = SeededGenerator(seed: 20251126)
        let store = try FileObjectStore(root: dir.sub("store"), create: true)
        var options = PackOptions(); options.parameters = try StreamParameters(segmentSize: 1024); options.concurrency = 2
        let packer = try Packer(store: store, datasetID: "fuzz", key: try SecureBytes.random(count: 32), options: options)
        var accepted = 0, refused = 0
        for i in 0..<3000 {
            var a = seeds[Int(rng.next() % UInt64(seeds.count))]
            let blocks = a.count / 512
            switch rng.next() % 6 {
            case 0:  // flip bytes anywhere
                for _ in 0..<(1 + rng.next() % 4) { a[Int(rng.next() % UInt64(a.count))] ^= UInt8(1 << (rng.next() % 8)) }
            case 1, 2:  // change a header-ish byte and fix that block's checksum, to get past it
                let blk = Int(rng.next() % UInt64(blocks)) * 512
                let off = Int(rng.next() % 512)
                a[blk + off] = [0, 0x2f, 0x2e, 0x30, 0x37, 0x78, 0x4c, 0xff, UInt8(truncatingIfNeeded: rng.next())][Int(rng.next() % 9)]
                if off < 148 || off >= 156 {
                    var sum = 0
                    for j in 0..<512 { sum += (148..<156).contains(j) ? 0x20 : Int(a[blk + j]) }
                    let c = String(sum, radix: 8)
                    a.replaceSubrange(blk + 148..<blk + 156, with: Array((String(repeating: "0", count: max(0, 6 - c.count)) + c).utf8.prefix(6)) + [0, 0x20])
                }
            case 3:  // truncate
                a = Array(a.prefix(Int(rng.next() % UInt64(a.count))))
            case 4:  // insert random bytes
                let at = Int(rng.next() % UInt64(a.count))
                a.insert(contentsOf: rng.bytes(1 + Int(rng.next() % 600)), at: at)
            default:  // duplicate or drop a block range
                let from = Int(rng.next() % UInt64(blocks)), n = 1 + Int(rng.next() % 3)
                let range = from * 512..<min(a.count, (from + n) * 512)
                if rng.next() % 2 == 0 { a.insert(contentsOf: Array(a[range]), at: range.lowerBound) } else { a.removeSubrange(range) }
            }
            do {
                _ = try readArchive(BytesSource(a, maxRead: 1 + Int(rng.next() % 5000)))
                accepted += 1
            } catch is TarError {
                refused += 1
            } catch {
                Issue.record("mutation \(i): not a TarError: \(error)")
            }
            if i % 25 == 0 {
                do { _ = try packer.pack(tar: BytesSource(a)) } catch is TarError {} catch {
                    Issue.record("mutation \(i): pack(tar:) failed with a non-tar error: \(error)")
                }
            }
        }
        #expect(refused > 1000)
        #expect(accepted > 10)
    }

    @Test("a 128 MiB file streams through pack(tar:) with at most 5 chunks of plaintext queued")
    func memoryBound() throws {
        let dir = TempDir("cce4-tar-big")
        let store = try FileObjectStore(root: dir.sub("store"), create: true)
        var options = PackOptions()
        options.partSize = 64 << 20
        options.concurrency = 2
        let key = try SecureBytes.random(count: 32)
        let packer = try Packer(store: store, datasetID: "big", key: key, options: options)
        let size: Int64 = 128 << 20
        let result = try packer.pack(tar: SyntheticTar(size: size))
        #expect(result.plaintextBytes == size)
        // The queue between reader and encryptor never held more than its 4 chunks + 1 in hand.
        #expect(packer.chunkMeter.peak <= 5 * (256 << 10), "peak queued plaintext \(packer.chunkMeter.peak)")
        #expect(packer.chunkMeter.peak > 0)
        let reader = try DatasetReader(store: store, datasetID: "big", root: result.root, key: key)
        guard case .entry(let e, _) = try reader.resolve("big.bin"), case .file(let f) = e.target else { throw TestFailure("no big.bin") }
        #expect(f.size == size)
        let tail = try reader.open(f).read(size - 4096..<size)
        #expect(tail.enumerated().allSatisfy { $0.element == SyntheticTar.byte(at: Int64($0.offset) + size - 4096) })
    }
}

/// creat(2) with a raw byte path (names that are not UTF-8).
enum Packerless {
    static func create(_ path: [UInt8]) -> Int32 {
        (path + [0]).withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_CREAT | O_WRONLY | O_TRUNC, 0o644) } }
    }
}

@Suite("Tar streaming memory")
struct TarMemoryTests {
    /// The process's own peak RSS, measured alone: `cce4 dataset pack --tar -` reading a
    /// 256 MiB file from a pipe (tests/interop/tar_stream.py generates it on the fly).
    @Test("cce4 dataset pack --tar - streams a 256 MiB file in a bounded peak RSS")
    func peakRSS() throws {
        let dir = TempDir("cce4-tar-rss")
        #expect(try run(Repo.binary("cce4"), ["key", "generate", "--insecure-key-file", dir.sub("key")]).status == 0)
        let r = try run(Repo.python, [Repo.root + "/Tests/interop/tar_stream.py", "256", Repo.binary("cce4"), "dataset", "pack", "--tar", "-",
                                      "--store", "file://" + dir.sub("store"), "--dataset", "big", "--insecure-key-file", dir.sub("key"),
                                      "--part-size", String(64 << 20), "-q"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try JSONSerialization.jsonObject(with: r.stdout) as! [String: Any]
        #expect(o["status"] as? Int == 0, "\(o["stderr"] ?? "")")
        let rss = (o["maxrss_kib"] as! NSNumber).intValue << 10
        #expect(rss < 96 << 20, "peak RSS \(rss >> 20) MiB while packing a 256 MiB stream")
        #expect((o["stdout"] as? String)?.trimmingCharacters(in: .whitespacesAndNewlines).count == 64)
    }
}

@Suite("Tar writer test vector")
struct TarVectorTests {
    /// docs/tar.md §4.3: `d/` (0755, mtime 1700000000) holding `hi.txt` ("hi\n", 0644,
    /// mtime 1700000000.5): a ustar directory header, then a pax header (mtime=1700000000.5)
    /// and the file's ustar header, its content, and the two end blocks.
    @Test("the documented archive of a two-entry tree, byte for byte")
    func vector() throws {
        let dir = TempDir("cce4-tar-vector")
        let src = dir.sub("src")
        try writeFile(src + "/d/hi.txt", Array("hi\n".utf8))
        chmod(src + "/d/hi.txt", 0o644); chmod(src + "/d", 0o755)
        var t1 = [timespec(tv_sec: 1_700_000_000, tv_nsec: 500_000_000), timespec(tv_sec: 1_700_000_000, tv_nsec: 500_000_000)]
        utimensat(AT_FDCWD, src + "/d/hi.txt", &t1, 0)
        var t2 = [timespec(tv_sec: 1_700_000_000, tv_nsec: 0), timespec(tv_sec: 1_700_000_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, src + "/d", &t2, 0)
        let w = try TarWriter(directory: src)
        var all = [UInt8](repeating: 0, count: Int(w.archiveSize))
        var pos = 0
        while true {
            let n = try all.withUnsafeMutableBytes { try w.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[pos...])) }
            if n == 0 { break }
            pos += n
        }
        #expect(pos == 5 * 512 + 1024)
        // The directory header.
        #expect(Array(all[0..<3]) == Array("d/\u{0}".utf8))
        #expect(String(decoding: all[100..<108], as: UTF8.self) == "0000755\u{0}")
        #expect(String(decoding: all[124..<136], as: UTF8.self) == "00000000000\u{0}")
        #expect(String(decoding: all[136..<148], as: UTF8.self) == "14524770400\u{0}")
        #expect(String(decoding: all[148..<156], as: UTF8.self) == "007472\u{0} ")
        #expect(all[156] == UInt8(ascii: "5"))
        #expect(String(decoding: all[257..<265], as: UTF8.self) == "ustar\u{0}00")
        // The pax header and its one record.
        #expect(all[512 + 156] == UInt8(ascii: "x"))
        #expect(String(decoding: all[1024..<1048], as: UTF8.self) == "22 mtime=1700000000.5\n\u{0}\u{0}")
        // The file header, content, end.
        #expect(Array(all[1536..<1545]) == Array("d/hi.txt\u{0}".utf8))
        #expect(String(decoding: all[1536 + 124..<1536 + 136], as: UTF8.self) == "00000000003\u{0}")
        #expect(Array(all[2048..<2052]) == Array("hi\n\u{0}".utf8))
        #expect(all[2560...].allSatisfy { $0 == 0 })
        #expect(String(decoding: all[512 + 148..<512 + 156], as: UTF8.self) == "012461\u{0} ")
        #expect(String(decoding: all[1536 + 148..<1536 + 156], as: UTF8.self) == "010624\u{0} ")
        #expect(SHA256Digest.hash(all).hex == "2af486de2778dbdf7e11302ae92c7ab7dcbdb33f6fc74efe1ae7d1b87263409e")
    }
}
