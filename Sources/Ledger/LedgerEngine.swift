// The ledger interface both engines implement: the embedded file (here) and the EVM chain
// (to come). Callers — the CLI, the Privacy Plane, cce4fs's rental checks — use only this,
// so moving to a chain changes the ledger URL, not code.
import Wallet

public protocol LedgerEngine: AnyObject {
    /// A stable name for the log (the embedded engine's checkpoint origin; the chain's
    /// chain id and contract address).
    var origin: String { get }

    /// Checks `op` against the rules as `signer`, records it, and returns its event.
    /// `.setRental` with rental id 0 makes a new rental; the event carries its id.
    @discardableResult
    func submit(_ op: Operation, signer: PrivateKey) throws(LedgerError) -> Event

    /// Picks up what other writers recorded since the last read.
    func refresh() throws(LedgerError)

    func dataset(_ id: String) -> DatasetRecord?
    /// The rental through which `user` may use `dataset` at `time` (ERC-4907 `userOf`).
    func activeRental(dataset: String, user: Address, at time: UInt64) -> Rental?
    func events(matching filter: EventFilter) -> [Event]
    /// The id a new rental made now would get.
    var nextRentalID: UInt64 { get }

    /// The EIP-712 domain operator approvals for this ledger are signed over.
    var approvalDomain: EIP712Domain { get }
    /// Whether `owner` has approved `operator` (ERC-721 `isApprovedForAll`) at `time`.
    func isOperator(_ operator: Address, of owner: Address, at time: UInt64) -> Bool
    /// The nonce of `owner`'s last operator approval (0 if none): the next must be higher.
    func approvalNonce(of owner: Address) -> UInt64
}

extension EmbeddedLedger: LedgerEngine {
    @discardableResult
    public func submit(_ op: Operation, signer: PrivateKey) throws(LedgerError) -> Event {
        try append(op, signer: signer)
        return state.events[state.events.count - 1] // the one just applied
    }
    // Fail closed: a ledger whose last read found a bad entry answers nothing.
    public func dataset(_ id: String) -> DatasetRecord? { isPoisoned ? nil : state.datasets[id] }
    public func activeRental(dataset: String, user: Address, at time: UInt64) -> Rental? {
        isPoisoned ? nil : state.activeRental(dataset: dataset, user: user, at: time)
    }
    public func events(matching filter: EventFilter) -> [Event] { isPoisoned ? [] : state.events(matching: filter) }
    public var nextRentalID: UInt64 { state.nextRentalID }
    public var approvalDomain: EIP712Domain { state.domain }
    public func isOperator(_ operator: Address, of owner: Address, at time: UInt64) -> Bool {
        isPoisoned ? false : state.isOperator(`operator`, of: owner, at: time)
    }
    public func approvalNonce(of owner: Address) -> UInt64 { state.approvalNonces[owner] ?? 0 }
}

/// Opens a ledger by location: a path or file:// URL is the embedded engine; an
/// evm+http(s):// URL (docs/ledger.md §7.1) is the chain engine.
public enum Ledgers {
    public static func open(_ location: String, writable: Bool = false) throws(LedgerError) -> any LedgerEngine {
        if location.hasPrefix("file://") { return try EmbeddedLedger(path: String(location.dropFirst(7)), writable: writable) }
        if EVMLocation.isEVM(location) { return try EVMLedger(location) }
        guard !location.contains("://") else {
            throw .invalidArgument("unsupported ledger location \(location.prefix(80)): use a file path, file://PATH or evm+http://HOST:PORT?chain=…&rental=0x…&audit=0x…")
        }
        return try EmbeddedLedger(path: location, writable: writable)
    }
}
