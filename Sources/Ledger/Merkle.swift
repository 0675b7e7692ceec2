// The log as a Merkle tree in the RFC 6962 / RFC 9162 §2.1 shape: leaf hash
// SHA-256(0x00 || entry), node hash SHA-256(0x01 || left || right), with inclusion and
// consistency proofs and their verification (RFC 9162 §2.1.3.2 and §2.1.4.2).
import Envelope

public enum Merkle {
    public static func leafHash(_ leaf: [UInt8]) -> [UInt8] { SHA256Digest.hash([0x00] + leaf).bytes }
    public static func nodeHash(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] { SHA256Digest.hash([0x01] + left + right).bytes }
    /// MTH of the empty tree: SHA-256 of the empty string.
    public static let emptyRoot: [UInt8] = SHA256Digest.hash([]).bytes

    /// The largest power of two strictly below n (n >= 2).
    static func split(_ n: UInt64) -> UInt64 {
        var k: UInt64 = 1
        while k << 1 < n { k <<= 1 }
        return k
    }

    /// Verifies that `leafHash` is leaf `index` of the tree of `size` leaves with `root`.
    public static func verifyInclusion(leafHash: [UInt8], index: UInt64, size: UInt64, path: [[UInt8]], root: [UInt8]) throws(LedgerError) {
        guard index < size else { throw .proof("leaf index \(index) is not below the tree size \(size)") }
        guard path.allSatisfy({ $0.count == 32 }) else { throw .proof("a path hash is not 32 bytes") }
        var fn = index, sn = size - 1, r = leafHash
        for p in path {
            guard sn != 0 else { throw .proof("the path is longer than the tree is deep") }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1; sn >>= 1
        }
        guard sn == 0 else { throw .proof("the path is shorter than the tree is deep") }
        guard constantTime(r, root) else { throw .proof("the path leads to another root: the entry is not in this tree") }
    }

    /// Verifies that the tree of `newSize` leaves with `newRoot` extends the tree of
    /// `oldSize` leaves with `oldRoot` (append-only: nothing before was changed).
    public static func verifyConsistency(oldSize: UInt64, oldRoot: [UInt8], newSize: UInt64, newRoot: [UInt8], path: [[UInt8]]) throws(LedgerError) {
        guard oldSize <= newSize else { throw .proof("the old tree (\(oldSize)) is larger than the new one (\(newSize)): the log shrank") }
        guard path.allSatisfy({ $0.count == 32 }) else { throw .proof("a path hash is not 32 bytes") }
        if oldSize == newSize {
            guard path.isEmpty, constantTime(oldRoot, newRoot) else { throw .proof("same size but different roots: the log was rewritten") }
            return
        }
        if oldSize == 0 { guard path.isEmpty else { throw .proof("a proof from the empty tree is empty") }; return }
        var p = path
        if oldSize & (oldSize - 1) == 0 { p.insert(oldRoot, at: 0) }
        guard !p.isEmpty else { throw .proof("empty consistency path") }
        var fn = oldSize - 1, sn = newSize - 1
        while fn & 1 == 1 { fn >>= 1; sn >>= 1 }
        var fr = p[0], sr = p[0]
        for c in p.dropFirst() {
            guard sn != 0 else { throw .proof("the path is too long") }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr); sr = nodeHash(c, sr)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1; sn >>= 1
        }
        guard sn == 0 else { throw .proof("the path is too short") }
        guard constantTime(fr, oldRoot) else { throw .proof("the old root does not follow from the path: the log was rewritten before \(oldSize)") }
        guard constantTime(sr, newRoot) else { throw .proof("the new root does not follow from the path") }
    }

    static func constantTime(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var d: UInt8 = 0
        for i in 0..<a.count { d |= a[i] ^ b[i] }
        return d == 0
    }
}

/// The tree over the log's leaf hashes, with every complete subtree kept, so that roots and
/// proofs for any size cost O(log n) hashes (O(log² n) at the ragged right edge).
public struct MerkleTree: Sendable {
    /// levels[k][i]: the hash of the complete subtree over leaves [i·2^k, (i+1)·2^k).
    private var levels: [[[UInt8]]] = [[]]

    public init() {}
    public init(leafHashes: [[UInt8]]) { for h in leafHashes { append(leafHash: h) } }

    public var size: UInt64 { UInt64(levels[0].count) }

    public mutating func append(leafHash: [UInt8]) {
        levels[0].append(leafHash)
        var k = 0
        while levels[k].count % 2 == 0 {
            let n = levels[k].count
            let parent = Merkle.nodeHash(levels[k][n - 2], levels[k][n - 1])
            if levels.count == k + 1 { levels.append([]) }
            levels[k + 1].append(parent)
            k += 1
        }
    }

    public func leafHash(_ i: UInt64) -> [UInt8] { levels[0][Int(i)] }

    /// MTH(D[lo:hi]) for hi <= size.
    func hash(_ lo: UInt64, _ hi: UInt64) -> [UInt8] {
        let n = hi - lo
        if n == 0 { return Merkle.emptyRoot }
        if n & (n - 1) == 0 {
            let k = n.trailingZeroBitCount
            return levels[k][Int(lo >> UInt64(k))]
        }
        let k = Merkle.split(n)
        return Merkle.nodeHash(hash(lo, lo + k), hash(lo + k, hi))
    }

    /// The root of the first `size` leaves.
    public func root(size: UInt64) -> [UInt8] { hash(0, size) }

    /// RFC 6962 PATH(m, D[0:size]).
    public func inclusionProof(index: UInt64, size: UInt64) throws(LedgerError) -> [[UInt8]] {
        guard size <= self.size else { throw .proof("the log has \(self.size) entries, not \(size)") }
        guard index < size else { throw .proof("entry \(index) is not among the first \(size)") }
        var out = [[UInt8]]()
        path(index, 0, size, &out)
        return out
    }

    private func path(_ m: UInt64, _ lo: UInt64, _ hi: UInt64, _ out: inout [[UInt8]]) {
        let n = hi - lo
        if n <= 1 { return }
        let k = Merkle.split(n)
        if m < k {
            path(m, lo, lo + k, &out); out.append(hash(lo + k, hi))
        } else {
            path(m - k, lo + k, hi, &out); out.append(hash(lo, lo + k))
        }
    }

    /// RFC 6962 PROOF(old, D[0:new]).
    public func consistencyProof(oldSize: UInt64, newSize: UInt64) throws(LedgerError) -> [[UInt8]] {
        guard newSize <= size else { throw .proof("the log has \(size) entries, not \(newSize)") }
        guard oldSize <= newSize else { throw .proof("old size \(oldSize) is above new size \(newSize)") }
        if oldSize == 0 || oldSize == newSize { return [] }
        var out = [[UInt8]]()
        subproof(oldSize, 0, newSize, true, &out)
        return out
    }

    private func subproof(_ m: UInt64, _ lo: UInt64, _ hi: UInt64, _ b: Bool, _ out: inout [[UInt8]]) {
        let n = hi - lo
        if m == n {
            if !b { out.append(hash(lo, hi)) }
            return
        }
        let k = Merkle.split(n)
        if m <= k {
            subproof(m, lo, lo + k, b, &out); out.append(hash(lo + k, hi))
        } else {
            subproof(m - k, lo + k, hi, false, &out); out.append(hash(lo, lo + k))
        }
    }
}
