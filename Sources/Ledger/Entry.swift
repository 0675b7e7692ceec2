// Ledger entries: what happened (register a dataset, a version, grant or end a rental, an
// audit event), who did it (an Ethereum address), when, and the hash of the entry before.
// Byte layout in docs/ledger.md §2.
import Envelope
import Wallet

/// Why the ledger refused an operation, a file, or a proof.
public enum LedgerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The operation is well-formed but the rules forbid it (not the owner, unknown dataset…).
    case refused(String)
    /// An argument is malformed (dataset id, event kind, time).
    case invalidArgument(String)
    /// The ledger file is damaged or was altered: `entry` is the first bad entry's index
    /// (nil for the header), `offset` its byte offset.
    case corrupt(entry: Int?, offset: Int, String)
    /// A proof or checkpoint does not verify.
    case proof(String)
    /// The file could not be read or written.
    case io(String)

    public var description: String {
        switch self {
        case .refused(let why): return why
        case .invalidArgument(let why): return why
        case .corrupt(let entry, let offset, let why):
            return entry.map { "entry \($0) (byte \(offset)) is bad: \(why)" } ?? "the ledger header is bad: \(why)"
        case .proof(let why): return "proof does not verify: \(why)"
        case .io(let why): return why
        }
    }
}

/// The kinds of entries. Raw values are the on-disk kind byte.
public enum EntryKind: UInt8, Sendable, CaseIterable {
    case datasetRegister = 1, datasetVersion = 2, rentalSet = 3, rentalEnd = 4, audit = 5, operatorApprove = 6

    /// The name events are listed and queried by.
    public var name: String {
        switch self {
        case .datasetRegister: return "dataset.register"
        case .datasetVersion: return "dataset.version"
        case .rentalSet: return "rental.set"
        case .rentalEnd: return "rental.end"
        case .audit: return "audit"
        case .operatorApprove: return "operator.approve"
        }
    }
}

/// What an entry does, with its kind-specific fields.
public enum Operation: Hashable, Sendable {
    /// Registers `dataset`, owned from now on by `owner`, under a policy (hash). The actor is
    /// the owner or an operator the owner approved.
    case registerDataset(dataset: String, policyHash: [UInt8], owner: Address)
    /// Records a new version (root-directory hash) of `dataset`. Owner (or operator) only.
    case registerVersion(dataset: String, root: [UInt8])
    /// ERC-4907 `setUser`: rental `rentalID` of `dataset` is used by `user` until `expires`
    /// (Unix seconds, exclusive). Owner (or operator) only. `rentalID` 0 asks for a new rental: the engine
    /// assigns the next id under its lock (recorded entries always carry the real id).
    case setRental(dataset: String, rentalID: UInt64, user: Address, expires: UInt64)
    /// Ends rental `rentalID` early (ERC-4907 `setUser(id, 0, 0)`). Owner (or operator) only.
    case endRental(dataset: String, rentalID: UInt64)
    /// ERC-721 `setApprovalForAll` by the owner's EIP-712 signature: anyone may submit it.
    case approveOperator(OperatorApproval)
    /// An audit event of kind `event` (e.g. "key.release"), about `dataset` (or none), with the
    /// hash of its payload (kept elsewhere).
    case audit(event: String, dataset: String?, payloadHash: [UInt8])

    public var kind: EntryKind {
        switch self {
        case .registerDataset: return .datasetRegister
        case .registerVersion: return .datasetVersion
        case .setRental: return .rentalSet
        case .endRental: return .rentalEnd
        case .audit: return .audit
        case .approveOperator: return .operatorApprove
        }
    }

    public var dataset: String? {
        switch self {
        case .registerDataset(let d, _, _), .registerVersion(let d, _), .setRental(let d, _, _, _), .endRental(let d, _): return d
        case .audit(_, let d, _): return d
        case .approveOperator: return nil
        }
    }

    /// The event name: the kind's name, or the audit event's own kind.
    public var eventName: String {
        if case .audit(let e, _, _) = self { return e }
        return kind.name
    }
}

/// One signed entry of the log.
public struct Entry: Hashable, Sendable {
    public static let formatVersion: UInt8 = 2
    /// Position in the log, from 0.
    public let index: UInt64
    /// Unix seconds when it was appended (never earlier than the entry before).
    public let time: UInt64
    /// The leaf hash of the entry before (for entry 0: SHA-256 of the file header).
    public let previous: [UInt8]
    public let actor: Address
    public let operation: Operation
    /// EIP-191 personal_sign by `actor` over Keccak-256 of the unsigned body.
    public let signature: Signature

    /// The body without the signature: what is signed.
    public var unsignedBody: [UInt8] { Self.encodeUnsigned(index: index, time: time, previous: previous, actor: actor, operation: operation) }
    /// The whole body: the Merkle leaf.
    public var body: [UInt8] { unsignedBody + signature.bytes }
    /// RFC 6962 leaf hash: SHA-256(0x00 || body).
    public var leafHash: [UInt8] { Merkle.leafHash(body) }
    /// The 32 bytes the actor signs with personal_sign.
    public static func signingDigest(_ unsigned: [UInt8]) -> [UInt8] { Keccak256.hash(unsigned) }

    /// Builds and signs an entry.
    public init(index: UInt64, time: UInt64, previous: [UInt8], operation: Operation, signer: PrivateKey) throws(WalletError) {
        self.index = index; self.time = time; self.previous = previous; self.actor = signer.address; self.operation = operation
        let unsigned = Self.encodeUnsigned(index: index, time: time, previous: previous, actor: signer.address, operation: operation)
        self.signature = try signer.signPersonal(Self.signingDigest(unsigned))
    }

    init(index: UInt64, time: UInt64, previous: [UInt8], actor: Address, operation: Operation, signature: Signature) {
        self.index = index; self.time = time; self.previous = previous; self.actor = actor; self.operation = operation; self.signature = signature
    }

    /// Checks the signature recovers to `actor` (low s only).
    public func verifySignature() throws(LedgerError) {
        let digest = Self.signingDigest(unsignedBody)
        let signer: Address
        do { signer = try PersonalMessage.signer(of: digest, signature: signature) } catch {
            throw .corrupt(entry: Int(clamping: index), offset: 0, "its signature is invalid: \(error)")
        }
        guard signer == actor else { throw .corrupt(entry: Int(clamping: index), offset: 0, "signed by \(signer), not by its actor \(actor)") }
    }

    static func encodeUnsigned(index: UInt64, time: UInt64, previous: [UInt8], actor: Address, operation: Operation) -> [UInt8] {
        var w = Writer()
        w.u8(formatVersion); w.u8(operation.kind.rawValue); w.u64(index); w.u64(time); w.raw(previous); w.raw(actor.bytes)
        w.string(operation.dataset ?? "")
        switch operation {
        case .registerDataset(_, let policy, let owner): w.raw(policy); w.raw(owner.bytes)
        case .registerVersion(_, let root): w.raw(root)
        case .setRental(_, let id, let user, let expires): w.u64(id); w.raw(user.bytes); w.u64(expires)
        case .endRental(_, let id): w.u64(id)
        case .audit(let event, _, let payload): w.string(event); w.raw(payload)
        case .approveOperator(let a): w.raw(a.owner.bytes); w.raw(a.operator.bytes); w.u64(a.expires); w.u64(a.nonce); w.raw(a.signature.bytes)
        }
        return w.bytes
    }

    /// Parses a body; refuses anything but exactly one well-formed entry.
    static func decode(_ body: [UInt8]) throws(LedgerError) -> Entry {
        var r = Reader(body)
        guard try r.u8() == formatVersion else { throw .invalidArgument("unknown entry format version") }
        guard let kind = EntryKind(rawValue: try r.u8()) else { throw .invalidArgument("unknown entry kind") }
        let index = try r.u64(), time = try r.u64(), previous = try r.bytes(32), actor = Address(bytes: try r.bytes(20))
        let dataset = try r.string()
        let op: Operation
        switch kind {
        case .datasetRegister: op = .registerDataset(dataset: dataset, policyHash: try r.bytes(32), owner: Address(bytes: try r.bytes(20)))
        case .datasetVersion: op = .registerVersion(dataset: dataset, root: try r.bytes(32))
        case .rentalSet: op = .setRental(dataset: dataset, rentalID: try r.u64(), user: Address(bytes: try r.bytes(20)), expires: try r.u64())
        case .rentalEnd: op = .endRental(dataset: dataset, rentalID: try r.u64())
        case .audit: op = .audit(event: try r.string(), dataset: dataset.isEmpty ? nil : dataset, payloadHash: try r.bytes(32))
        case .operatorApprove:
            guard dataset.isEmpty else { throw .invalidArgument("an operator approval names no dataset") }
            let owner = Address(bytes: try r.bytes(20)), op2 = Address(bytes: try r.bytes(20)), expires = try r.u64(), nonce = try r.u64()
            let s: Signature
            do { s = try Signature(bytes: try r.bytes(65)) } catch { throw .invalidArgument("malformed operator approval signature") }
            op = .approveOperator(OperatorApproval(owner: owner, operator: op2, expires: expires, nonce: nonce, signature: s))
        }
        let sig: Signature
        do { sig = try Signature(bytes: try r.bytes(65)) } catch { throw .invalidArgument("malformed signature") }
        guard r.atEnd else { throw .invalidArgument("trailing bytes after the signature") }
        try Validate.operation(op)
        let entry = Entry(index: index, time: time, previous: previous, actor: actor, operation: op, signature: sig)
        // One encoding per entry: a body that decodes but re-encodes differently is refused.
        guard entry.body == body else { throw .invalidArgument("not in canonical form") }
        return entry
    }
}

enum Validate {
    /// Dataset ids as the dataset format has them: 1–64 of a-z 0-9 . - _, starting alnum.
    static func datasetID(_ id: String) throws(LedgerError) {
        do { try AssociatedData.validateDatasetID(id) } catch { throw .invalidArgument(error.description) }
    }

    /// Audit event kinds: 1–64 of a-z 0-9 . - _, starting with a letter.
    static func eventName(_ e: String) throws(LedgerError) {
        let u = Array(e.utf8)
        guard (1...64).contains(u.count), let f = u.first, f >= 0x61 && f <= 0x7a,
              u.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2e || $0 == 0x2d || $0 == 0x5f })
        else { throw .invalidArgument("event kind '\(e.prefix(70))' must be 1 to 64 of a-z, 0-9, '.', '-', '_', starting with a letter") }
        guard !EntryKind.allCases.contains(where: { $0 != .audit && $0.name == e }) else {
            throw .invalidArgument("event kind '\(e)' is reserved for the ledger's own operations")
        }
    }

    static func operation(_ op: Operation) throws(LedgerError) {
        switch op {
        case .registerDataset(let d, let p, let owner):
            try datasetID(d); try hash32(p, "policy hash")
            guard owner != .zero else { throw .invalidArgument("a dataset's owner cannot be the zero address") }
        case .registerVersion(let d, let root):
            try datasetID(d); try hash32(root, "root hash")
            guard root.contains(where: { $0 != 0 }) else { throw .invalidArgument("a root hash of zeros names no version") }
        case .setRental(let d, let id, let user, _):
            try datasetID(d)
            guard id > 0 else { throw .invalidArgument("rental ids start at 1") }
            guard user != .zero else { throw .invalidArgument("a rental's user cannot be the zero address (end the rental instead)") }
        case .endRental(let d, let id):
            try datasetID(d)
            guard id > 0 else { throw .invalidArgument("rental ids start at 1") }
        case .audit(let e, let d, let p):
            try eventName(e)
            if let d { try datasetID(d) }
            try hash32(p, "payload hash")
        case .approveOperator(let a):
            guard a.owner != .zero, a.operator != .zero else { throw .invalidArgument("an operator approval names two nonzero addresses") }
            guard a.owner != a.operator else { throw .invalidArgument("an owner cannot approve itself as its operator") }
        }
    }

    static func hash32(_ b: [UInt8], _ what: String) throws(LedgerError) {
        guard b.count == 32 else { throw .invalidArgument("a \(what) is 32 bytes") }
    }
}

/// Big-endian writer for entry bodies.
struct Writer {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func u64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    mutating func raw(_ b: [UInt8]) { bytes += b }
    /// u8 length, then the UTF-8 bytes (callers validate: at most 64).
    mutating func string(_ s: String) { let u = Array(s.utf8); u8(UInt8(u.count)); bytes += u }
}

/// Bounds-checked big-endian reader: every read past the end is an error, never a trap.
struct Reader {
    let bytes: [UInt8]
    var at = 0
    init(_ b: [UInt8]) { bytes = b }
    var atEnd: Bool { at == bytes.count }
    mutating func bytes(_ n: Int) throws(LedgerError) -> [UInt8] {
        guard n >= 0, bytes.count - at >= n else { throw .invalidArgument("truncated") }
        defer { at += n }
        return Array(bytes[at..<(at + n)])
    }
    mutating func u8() throws(LedgerError) -> UInt8 { try bytes(1)[0] }
    mutating func u32() throws(LedgerError) -> UInt32 { try bytes(4).reduce(0) { $0 << 8 | UInt32($1) } }
    mutating func u64() throws(LedgerError) -> UInt64 { try bytes(8).reduce(0) { $0 << 8 | UInt64($1) } }
    mutating func string() throws(LedgerError) -> String {
        let n = Int(try u8())
        guard n <= 64 else { throw .invalidArgument("string longer than 64 bytes") }
        return String(decoding: try bytes(n), as: UTF8.self)
    }
}
