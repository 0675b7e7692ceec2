// RLP (Ethereum Yellow Paper, appendix B): the encoding of transactions. Encoding only; the
// engine never parses RLP from a node (receipts and blocks arrive as JSON).

/// An RLP item: a byte string or a list of items.
public indirect enum RLP: Equatable, Sendable {
    case bytes([UInt8])
    case list([RLP])

    /// A non-negative integer as RLP wants it: big-endian without leading zeros (0 is empty).
    public static func uint(_ v: UInt64) -> RLP { .bytes(BigEndian.minimal(v)) }
    /// A big-endian integer of any width, leading zeros stripped.
    public static func uint(bigEndian b: [UInt8]) -> RLP { .bytes(Array(b.drop(while: { $0 == 0 }))) }

    public var encoded: [UInt8] {
        switch self {
        case .bytes(let b):
            if b.count == 1 && b[0] < 0x80 { return b }
            return Self.header(b.count, offset: 0x80) + b
        case .list(let items):
            let body = items.flatMap(\.encoded)
            return Self.header(body.count, offset: 0xc0) + body
        }
    }

    static func header(_ length: Int, offset: UInt8) -> [UInt8] {
        if length < 56 { return [offset + UInt8(length)] }
        let len = BigEndian.minimal(UInt64(length))
        return [offset + 55 + UInt8(len.count)] + len
    }
}

/// Big-endian helpers for quantities.
public enum BigEndian {
    /// `v` big-endian without leading zero bytes (empty for 0).
    public static func minimal(_ v: UInt64) -> [UInt8] {
        var out = [UInt8]()
        var x = v
        while x > 0 { out.insert(UInt8(x & 0xff), at: 0); x >>= 8 }
        return out
    }
}
