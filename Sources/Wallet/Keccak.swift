// Keccak-256 as Ethereum uses it: the original Keccak padding (0x01 … 0x80), not the
// FIPS 202 SHA3-256 padding (0x06 … 0x80). OpenSSL 3.0 offers only SHA3, hence this
// implementation of Keccak-f[1600] (the reference's round constants and rotation offsets).

/// Keccak-256 (rate 1088 bits, capacity 512, output 256, padding 0x01).
public struct Keccak256 {
    private var state = [UInt64](repeating: 0, count: 25)
    private var buffer = [UInt8](repeating: 0, count: rate)
    private var buffered = 0
    private static let rate = 136

    public init() {}

    /// The 32-byte digest of `data`.
    public static func hash(_ data: some Sequence<UInt8>) -> [UInt8] {
        var k = Keccak256()
        k.update(data)
        return k.finalize()
    }

    public mutating func update(_ data: some Sequence<UInt8>) {
        for byte in data {
            buffer[buffered] = byte
            buffered += 1
            if buffered == Self.rate { absorbBlock(); buffered = 0 }
        }
    }

    public mutating func finalize() -> [UInt8] {
        for i in buffered..<Self.rate { buffer[i] = 0 }
        buffer[buffered] ^= 0x01
        buffer[Self.rate - 1] ^= 0x80
        absorbBlock()
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 { out[i] = UInt8(truncatingIfNeeded: state[i / 8] >> UInt64(8 * (i % 8))) }
        return out
    }

    private mutating func absorbBlock() {
        for i in 0..<(Self.rate / 8) {
            var lane: UInt64 = 0
            for j in 0..<8 { lane |= UInt64(buffer[i * 8 + j]) << UInt64(8 * j) }
            state[i] ^= lane
        }
        Self.permute(&state)
    }

    private static let roundConstants: [UInt64] = [
        0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
        0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
        0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
        0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
        0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
        0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
    ]
    /// Rotation offsets r[x + 5y].
    private static let rotations: [UInt64] = [
        0, 1, 62, 28, 27,
        36, 44, 6, 55, 20,
        3, 10, 43, 25, 39,
        41, 45, 15, 21, 8,
        18, 2, 61, 56, 14,
    ]

    @inline(__always) private static func rotl(_ v: UInt64, _ n: UInt64) -> UInt64 {
        n == 0 ? v : (v << n) | (v >> (64 - n))
    }

    /// Keccak-f[1600]: 24 rounds of θ, ρ, π, χ, ι over lanes A[x + 5y]. Works through raw
    /// pointers: bounds-checked array indexing made it the slowest part of signature checks.
    static func permute(_ state: inout [UInt64]) {
        state.withUnsafeMutableBufferPointer { buf in
            let a = buf.baseAddress!
            var c = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 25) { bb in
                let b = bb.baseAddress!
                roundConstants.withUnsafeBufferPointer { rc in
                    rotations.withUnsafeBufferPointer { rot in
                        for round in 0..<24 {
                            c.0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20]
                            c.1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21]
                            c.2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22]
                            c.3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23]
                            c.4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24]
                            let d0 = c.4 ^ rotl(c.1, 1), d1 = c.0 ^ rotl(c.2, 1), d2 = c.1 ^ rotl(c.3, 1)
                            let d3 = c.2 ^ rotl(c.4, 1), d4 = c.3 ^ rotl(c.0, 1)
                            var y = 0
                            while y < 25 {
                                a[y] ^= d0; a[y + 1] ^= d1; a[y + 2] ^= d2; a[y + 3] ^= d3; a[y + 4] ^= d4
                                y += 5
                            }
                            for x in 0..<5 {
                                for y in 0..<5 {
                                    // π: B[y, 2x + 3y] = rot(A[x, y], r[x, y])
                                    b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(a[x + 5 * y], rot[x + 5 * y])
                                }
                            }
                            y = 0
                            while y < 25 {
                                let b0 = b[y], b1 = b[y + 1], b2 = b[y + 2], b3 = b[y + 3], b4 = b[y + 4]
                                a[y] = b0 ^ (~b1 & b2); a[y + 1] = b1 ^ (~b2 & b3); a[y + 2] = b2 ^ (~b3 & b4)
                                a[y + 3] = b3 ^ (~b4 & b0); a[y + 4] = b4 ^ (~b0 & b1)
                                y += 5
                            }
                            a[0] ^= rc[round]
                        }
                    }
                }
            }
        }
    }
}
