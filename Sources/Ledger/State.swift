// The ledger's state machine: entries applied in order, each checked against the rules
// (only a dataset's owner registers versions and grants or ends rentals). Both engines
// apply the same rules; docs/ledger.md §4 maps them onto the chain's contracts.
import Wallet

/// A dataset as the ledger knows it.
public struct DatasetRecord: Hashable, Sendable {
    public let id: String
    public let owner: Address
    public let policyHash: [UInt8]
    /// Root hashes in registration order, with the entry index that recorded each.
    public internal(set) var versions: [(root: [UInt8], entry: UInt64)]
    public static func == (a: DatasetRecord, b: DatasetRecord) -> Bool {
        a.id == b.id && a.owner == b.owner && a.policyHash == b.policyHash && a.versions.map(\.root) == b.versions.map(\.root)
    }
    public func hash(into h: inout Hasher) { h.combine(id) }
}

/// An ERC-4907 rental token: its `user` may use the dataset until `expires` (exclusive).
public struct Rental: Hashable, Sendable {
    public let id: UInt64
    public let dataset: String
    /// Each `setUser` in order: (time it took effect, user, expires). `userOf` at time T is
    /// the user of the last change at or before T, while T < its expires.
    public internal(set) var history: [(time: UInt64, user: Address, expires: UInt64)]
    public static func == (a: Rental, b: Rental) -> Bool { a.id == b.id && a.dataset == b.dataset && a.history.count == b.history.count }
    public func hash(into h: inout Hasher) { h.combine(id) }

    /// ERC-4907 `userOf` at `time`: the zero address once expired or ended.
    public func userOf(at time: UInt64) -> Address {
        guard let last = history.last(where: { $0.time <= time }), time < last.expires else { return .zero }
        return last.user
    }

    /// ERC-4907 `userExpires` at `time` (0 when ended).
    public func userExpires(at time: UInt64) -> UInt64 { history.last(where: { $0.time <= time })?.expires ?? 0 }
}

/// An event as queries return it: every entry is one.
public struct Event: Hashable, Sendable {
    public let index: UInt64
    public let time: UInt64
    public let kind: String
    public let actor: Address
    public let dataset: String?
    public let operation: Operation
}

/// Filters for event queries (nil: any).
public struct EventFilter: Sendable {
    public var dataset: String?
    public var actor: Address?
    public var kind: String?
    public var since: UInt64?
    public var until: UInt64?
    public init(dataset: String? = nil, actor: Address? = nil, kind: String? = nil, since: UInt64? = nil, until: UInt64? = nil) {
        self.dataset = dataset; self.actor = actor; self.kind = kind; self.since = since; self.until = until
    }
}

public struct LedgerState: Sendable {
    /// The EIP-712 domain operator approvals are signed over.
    public let domain: EIP712Domain
    public private(set) var datasets: [String: DatasetRecord] = [:]
    /// owner → operator → expires (exclusive; 0 revoked).
    public private(set) var operators: [Address: [Address: UInt64]] = [:]
    /// owner → the nonce of its last approval.
    public private(set) var approvalNonces: [Address: UInt64] = [:]
    public private(set) var rentals: [UInt64: Rental] = [:]
    public private(set) var events: [Event] = []
    public private(set) var lastTime: UInt64 = 0
    public var nextRentalID: UInt64 { UInt64(rentals.count) + 1 }

    public init(domain: EIP712Domain) { self.domain = domain }

    /// Whether `owner` has approved `operator` to act for it at `time` (entries are applied in
    /// time order, so this is the latest approval's answer).
    public func isOperator(_ operator: Address, of owner: Address, at time: UInt64) -> Bool {
        guard let expires = operators[owner]?[`operator`] else { return false }
        return time < expires
    }

    func mayActFor(_ owner: Address, actor: Address, at time: UInt64) -> Bool {
        owner == actor || isOperator(actor, of: owner, at: time)
    }

    /// Checks `op` by `actor` at `time` against the rules, without applying it.
    public func check(_ op: Operation, actor: Address, time: UInt64) throws(LedgerError) {
        try Validate.operation(op)
        guard time >= lastTime else { throw .refused("time \(time) is before the previous entry's (\(lastTime)): entries are in time order") }
        func owned(_ d: String) throws(LedgerError) -> DatasetRecord {
            guard let rec = datasets[d] else { throw .refused("dataset '\(d)' is not registered") }
            guard mayActFor(rec.owner, actor: actor, at: time) else {
                throw .refused("only the owner of '\(d)' (\(rec.owner)) or an operator it approved may do this; \(actor) is neither")
            }
            return rec
        }
        switch op {
        case .registerDataset(let d, _, let owner):
            guard datasets[d] == nil else { throw .refused("dataset '\(d)' is already registered (owner \(datasets[d]!.owner))") }
            guard mayActFor(owner, actor: actor, at: time) else {
                throw .refused("\(actor) may not register a dataset for \(owner): it is not the owner nor an operator the owner approved")
            }
        case .registerVersion(let d, let root):
            let rec = try owned(d)
            guard !rec.versions.contains(where: { $0.root == root }) else { throw .refused("that root is already a version of '\(d)'") }
        case .setRental(let d, let id, _, let expires):
            _ = try owned(d)
            if id != nextRentalID {
                guard let r = rentals[id] else { throw .refused("rental \(id) does not exist (the next new rental is \(nextRentalID))") }
                guard r.dataset == d else { throw .refused("rental \(id) is a rental of '\(r.dataset)', not '\(d)'") }
            }
            guard expires > time else { throw .refused("the rental would expire at \(expires), not after the entry's time \(time)") }
        case .endRental(let d, let id):
            _ = try owned(d)
            guard let r = rentals[id], r.dataset == d else { throw .refused("dataset '\(d)' has no rental \(id)") }
            guard r.userOf(at: time) != .zero else { throw .refused("rental \(id) has already ended or expired") }
        case .audit(_, let d, _):
            if let d, datasets[d] == nil { throw .refused("dataset '\(d)' is not registered") }
        case .approveOperator(let a):
            try a.verify(domain: domain)
            let last = approvalNonces[a.owner] ?? 0
            guard a.nonce > last else { throw .refused("operator approval nonce \(a.nonce) is not above \(a.owner)'s last (\(last)): a replay or out of order") }
            guard a.expires == 0 || a.expires > time else { throw .refused("the operator approval expired at \(a.expires), before the entry's time \(time)") }
        }
    }

    /// Checks and applies an entry (the index must be the next one).
    public mutating func apply(_ e: Entry) throws(LedgerError) {
        try check(e.operation, actor: e.actor, time: e.time)
        switch e.operation {
        case .registerDataset(let d, let policy, let owner):
            datasets[d] = DatasetRecord(id: d, owner: owner, policyHash: policy, versions: [])
        case .registerVersion(let d, let root):
            datasets[d]!.versions.append((root, e.index))
        case .setRental(let d, let id, let user, let expires):
            if rentals[id] == nil { rentals[id] = Rental(id: id, dataset: d, history: []) }
            rentals[id]!.history.append((e.time, user, expires))
        case .endRental(_, let id):
            rentals[id]!.history.append((e.time, .zero, 0))
        case .audit:
            break
        case .approveOperator(let a):
            operators[a.owner, default: [:]][a.operator] = a.expires
            approvalNonces[a.owner] = a.nonce
        }
        lastTime = e.time
        events.append(Event(index: e.index, time: e.time, kind: e.operation.eventName, actor: e.actor, dataset: e.operation.dataset, operation: e.operation))
    }

    /// The rental through which `user` may use `dataset` at `time` (ERC-4907 `userOf`), if any.
    public func activeRental(dataset: String, user: Address, at time: UInt64) -> Rental? {
        rentals.values.filter { $0.dataset == dataset && $0.userOf(at: time) == user }.min { $0.id < $1.id }
    }

    public func events(matching f: EventFilter) -> [Event] {
        events.filter { e in
            (f.dataset == nil || e.dataset == f.dataset) && (f.actor == nil || e.actor == f.actor) && (f.kind == nil || e.kind == f.kind)
                && (f.since == nil || e.time >= f.since!) && (f.until == nil || e.time < f.until!)
        }
    }
}
