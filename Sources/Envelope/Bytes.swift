// Bounds-checked big-endian readers and writers for the formats' plaintext bodies.

/// Appends big-endian integers and byte strings.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xff)) }
    mutating func u32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(v >> UInt32(s) & 0xff)) } }
    mutating func u64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(v >> UInt64(s) & 0xff)) } }
    mutating func raw(_ b: some Collection<UInt8>) { bytes.append(contentsOf: b) }
}

/// Reads big-endian integers from a bounded window; every read past the end throws.
struct ByteReader {
    let base: UnsafeRawBufferPointer
    var pos: Int
    let end: Int
    let what: String

    init(_ base: UnsafeRawBufferPointer, from: Int = 0, to: Int? = nil, what: String) {
        self.base = base
        self.pos = from
        self.end = to ?? base.count
        self.what = what
    }

    var remaining: Int { end - pos }

    mutating func take(_ n: Int) throws(EnvelopeError) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= end - pos else { throw .malformed("\(what) truncated (needed \(n) bytes at offset \(pos), \(max(0, end - pos)) left)") }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: base[pos..<pos + n])
    }
    mutating func u8() throws(EnvelopeError) -> UInt8 { try take(1)[0] }
    mutating func u16() throws(EnvelopeError) -> UInt16 { let b = try take(2); return UInt16(b[0]) << 8 | UInt16(b[1]) }
    mutating func u32() throws(EnvelopeError) -> UInt32 {
        let b = try take(4); var v: UInt32 = 0
        for x in b { v = v << 8 | UInt32(x) }
        return v
    }
    mutating func u64() throws(EnvelopeError) -> UInt64 {
        let b = try take(8); var v: UInt64 = 0
        for x in b { v = v << 8 | UInt64(x) }
        return v
    }
    mutating func bytes(_ n: Int) throws(EnvelopeError) -> [UInt8] { Array(try take(n)) }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` with the format's typed error (the standard one is `rethrows`).
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(EnvelopeError) -> R) throws(EnvelopeError) -> R {
        do {
            return try withUnsafeBytes { try body($0) }
        } catch let e as EnvelopeError {
            throw e
        } catch {
            throw .malformed("\(error)")
        }
    }
}
