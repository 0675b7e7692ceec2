// The Solidity contract ABI for the calls the ledger makes: static words (uint, address,
// bool, bytes32), dynamic strings and bytes, and dynamic arrays of static tuples.
// Decoding is strict: every offset and length is bounds-checked, every word must hold a
// value of its type (no dirty high bytes), so a hostile node's answer is refused, never trusted.
import Envelope
import Wallet

public enum ABIError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    public var description: String { switch self { case .malformed(let why): return "malformed ABI data: \(why)" } }
}

/// An argument of a contract call.
public enum ABIValue: Equatable, Sendable {
    case uint(UInt64)
    /// A 256-bit unsigned integer, 32 bytes big-endian.
    case uint256([UInt8])
    case address(Address)
    case bool(Bool)
    case bytes32([UInt8])
    case string(String)
    case bytes([UInt8])

    var isDynamic: Bool { switch self { case .string, .bytes: return true; default: return false } }
}

public enum ABI {
    /// The 4-byte selector of a function signature such as `setUser(uint256,address,uint64)`.
    public static func selector(_ signature: String) -> [UInt8] { Array(Keccak256.hash(Array(signature.utf8)).prefix(4)) }
    /// An event's topic 0: Keccak-256 of its signature.
    public static func topic(_ signature: String) -> [UInt8] { Keccak256.hash(Array(signature.utf8)) }

    /// Calldata: selector then the encoded arguments.
    public static func call(_ signature: String, _ args: [ABIValue]) -> [UInt8] { selector(signature) + encode(args) }

    /// The head/tail encoding of a tuple of arguments.
    public static func encode(_ args: [ABIValue]) -> [UInt8] {
        var head = [UInt8](), tail = [UInt8]()
        let headSize = 32 * args.count
        for a in args {
            switch a {
            case .uint(let v): head += ABIWord.uint(v)
            case .uint256(let b): precondition(b.count == 32); head += b
            case .address(let x): head += ABIWord.address(x)
            case .bool(let b): head += ABIWord.uint(b ? 1 : 0)
            case .bytes32(let b): precondition(b.count == 32); head += b
            case .string(let s): head += ABIWord.uint(UInt64(headSize + tail.count)); tail += dynamic(Array(s.utf8))
            case .bytes(let b): head += ABIWord.uint(UInt64(headSize + tail.count)); tail += dynamic(b)
            }
        }
        return head + tail
    }

    static func dynamic(_ b: [UInt8]) -> [UInt8] {
        let padded = (b.count + 31) / 32 * 32
        return ABIWord.uint(UInt64(b.count)) + b + [UInt8](repeating: 0, count: padded - b.count)
    }

    /// Decodes a revert's data: `Error(string)` gives its reason, `Panic(uint256)` its code.
    public static func revertReason(_ data: [UInt8]) -> String? {
        if data.count >= 4 && Array(data.prefix(4)) == selector("Error(string)") {
            return try? ABIReader(Array(data.dropFirst(4))).string(0)
        }
        if data.count == 36 && Array(data.prefix(4)) == selector("Panic(uint256)") {
            return "panic 0x" + Hex.encode(data.suffix(2))
        }
        return nil
    }
}

/// Reads the ABI encoding of a call's result (or an event's data) by head slot.
public struct ABIReader: Sendable {
    public let data: [UInt8]
    /// Where the tuple being read starts (the base of its offsets).
    let base: Int
    /// Tuples longer than this many elements are refused (memory bound against hostile nodes).
    public static let maxElements = 4096

    public init(_ data: [UInt8]) { self.data = data; self.base = 0 }
    init(_ data: [UInt8], base: Int) { self.data = data; self.base = base }

    /// The 32-byte word at head slot `i`.
    public func word(_ i: Int) throws(ABIError) -> [UInt8] { try wordAt(base + 32 * i) }

    func wordAt(_ at: Int) throws(ABIError) -> [UInt8] {
        guard at >= 0, at <= data.count - 32 else { throw .malformed("a word at byte \(at) is past the end (\(data.count) bytes)") }
        return Array(data[at..<(at + 32)])
    }

    func small(_ w: [UInt8], _ what: String) throws(ABIError) -> Int {
        guard w.prefix(28).allSatisfy({ $0 == 0 }) else { throw .malformed("\(what) is too large") }
        return Int(w.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
    }

    public func uint64(_ i: Int) throws(ABIError) -> UInt64 {
        let w = try word(i)
        guard w.prefix(24).allSatisfy({ $0 == 0 }) else { throw .malformed("slot \(i) does not fit in 64 bits") }
        return w.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
    public func uint256(_ i: Int) throws(ABIError) -> [UInt8] { try word(i) }
    public func bytes32(_ i: Int) throws(ABIError) -> [UInt8] { try word(i) }
    public func address(_ i: Int) throws(ABIError) -> Address {
        let w = try word(i)
        guard w.prefix(12).allSatisfy({ $0 == 0 }) else { throw .malformed("slot \(i) is not an address") }
        return Address(bytes: Array(w.suffix(20)))
    }
    public func bool(_ i: Int) throws(ABIError) -> Bool {
        let v = try uint64(i)
        guard v <= 1 else { throw .malformed("slot \(i) is not a bool") }
        return v == 1
    }

    /// The dynamic bytes whose offset is in head slot `i`.
    public func bytes(_ i: Int, max: Int = 1 << 16) throws(ABIError) -> [UInt8] {
        let at = base + (try small(try word(i), "an offset"))
        let n = try small(try wordAt(at), "a length")
        guard n <= max else { throw .malformed("a length of \(n) bytes is over the limit of \(max)") }
        guard at + 32 + n <= data.count else { throw .malformed("bytes run past the end") }
        return Array(data[(at + 32)..<(at + 32 + n)])
    }

    /// The UTF-8 string whose offset is in head slot `i`.
    public func string(_ i: Int, max: Int = 1024) throws(ABIError) -> String {
        let b = try bytes(i, max: max)
        guard let s = String(validating: b, as: UTF8.self) else { throw .malformed("a string is not UTF-8") }
        return s
    }

    /// A dynamic array (offset in head slot `i`) of static tuples of `width` words each:
    /// a reader per element.
    public func array(_ i: Int, width: Int) throws(ABIError) -> [ABIReader] {
        let at = base + (try small(try word(i), "an offset"))
        let n = try small(try wordAt(at), "a length")
        guard n <= Self.maxElements else { throw .malformed("an array of \(n) elements is over the limit") }
        guard at + 32 + n * width * 32 <= data.count else { throw .malformed("an array runs past the end") }
        return (0..<n).map { ABIReader(data, base: at + 32 + $0 * width * 32) }
    }
}
