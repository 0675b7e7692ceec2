// The chain engine: the same ledger rules, kept by the contracts in contracts/*.vy on an EVM
// chain reached over JSON-RPC. Writes are EIP-1559 transactions built and signed here (nonce,
// fees, gas estimated; receipts awaited with a timeout); reads are eth_call at one pinned
// block (the `finalized` tag by default) whose timestamp is the "now" rentals are compared
// with; events are read back with eth_getLogs. With several RPC endpoints every answer must
// agree. docs/ledger.md §7.
//
// Why this lives in the Ledger target (over the EVM target's RLP/ABI/transaction/JSON-RPC
// primitives) rather than in a target of its own: `Ledgers.open` must accept evm+http://
// locations, so callers switch engines by configuration alone, and Ledger cannot import a
// target that imports Ledger.
import EVM
import Envelope
import Foundation
import Logging
import Wallet

/// Where a chain ledger is: `evm+http://HOST:PORT[/PATH]?chain=ID&rental=0x…&audit=0x…[&…]`.
/// Grammar (docs/ledger.md §7.1): the endpoint is the URL with `evm+` dropped and the query
/// removed; parameters: `chain` (decimal chain id, required), `rental` and `audit` (contract
/// addresses, required), `registry` (default: `rental`, which holds the registry), `block`
/// (`finalized` default, `safe`, `latest`), `rpc` (another endpoint URL, percent-encoded,
/// repeatable), `quorum` (endpoints that must answer, default all; answers always must agree),
/// `timeout` (seconds per request and for a receipt, default 60), `from` (first block to read
/// events from, default 0). Unknown or repeated parameters are refused.
public struct EVMLocation: Equatable, Sendable {
    public var endpoints: [String]
    public var chainID: UInt64
    public var rental: Address
    public var audit: Address
    public var registry: Address
    public var block: String = "finalized"
    public var quorum: Int
    public var timeout: Double = 60
    public var fromBlock: UInt64 = 0

    public init(endpoints: [String], chainID: UInt64, rental: Address, audit: Address, block: String = "finalized",
                quorum: Int? = nil, timeout: Double = 60, fromBlock: UInt64 = 0) {
        self.endpoints = endpoints; self.chainID = chainID; self.rental = rental; self.audit = audit; self.registry = rental
        self.block = block; self.quorum = quorum ?? endpoints.count; self.timeout = timeout; self.fromBlock = fromBlock
    }

    public static func isEVM(_ location: String) -> Bool { location.hasPrefix("evm+http://") || location.hasPrefix("evm+https://") }

    public static func parse(_ text: String) throws(LedgerError) -> EVMLocation {
        func bad(_ why: String) -> LedgerError { .invalidArgument("ledger location: \(why) (evm+http://HOST:PORT?chain=ID&rental=0x…&audit=0x…; docs/ledger.md §7.1)") }
        guard isEVM(text) else { throw bad("it must start with evm+http:// or evm+https://") }
        let rest = text.dropFirst(4)
        let parts = rest.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let base = String(parts[0])
        guard let c = URLComponents(string: base), c.host?.isEmpty == false, c.query == nil else { throw bad("'\(RPCEndpoint.redact(base))' is not an http URL") }
        var params: [String: String] = [:]
        var extra: [String] = []
        for item in (parts.count > 1 ? parts[1] : "").split(separator: "&") {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, let value = String(kv[1]).removingPercentEncoding, !value.isEmpty else { throw bad("'\(item.prefix(40))' is not NAME=VALUE") }
            let name = String(kv[0])
            guard ["chain", "rental", "audit", "registry", "block", "rpc", "quorum", "timeout", "from"].contains(name) else { throw bad("unknown parameter '\(name.prefix(40))'") }
            if name == "rpc" {
                guard value.hasPrefix("http://") || value.hasPrefix("https://"), URLComponents(string: value)?.host?.isEmpty == false else {
                    throw bad("rpc=\(RPCEndpoint.redact(value)) is not an http(s) URL")
                }
                extra.append(value)
                continue
            }
            guard params[name] == nil else { throw bad("'\(name)' is given twice") }
            params[name] = value
        }
        func address(_ name: String) throws(LedgerError) -> Address {
            guard let v = params[name] else { throw bad("'\(name)=0x…' is missing") }
            do { return try Address(v) } catch { throw bad("\(name): \(error)") }
        }
        guard let chainText = params["chain"], let chain = UInt64(chainText), chain > 0 else { throw bad("'chain=ID' (a decimal chain id) is missing or malformed") }
        var loc = EVMLocation(endpoints: [base] + extra, chainID: chain, rental: try address("rental"), audit: try address("audit"))
        if params["registry"] != nil { loc.registry = try address("registry") }
        guard loc.registry == loc.rental else { throw bad("registry must be the rental contract (Rentals.vy holds both)") }
        if let b = params["block"] {
            guard ["finalized", "safe", "latest"].contains(b) else { throw bad("block must be finalized, safe or latest") }
            loc.block = b
        }
        if let q = params["quorum"] {
            guard let n = Int(q), (1...loc.endpoints.count).contains(n) else { throw bad("quorum must be 1 to the number of endpoints (\(loc.endpoints.count))") }
            loc.quorum = n
        }
        if let t = params["timeout"] {
            guard let s = Double(t), s >= 0.1, s <= 3600 else { throw bad("timeout must be 0.1 to 3600 seconds") }
            loc.timeout = s
        }
        if let f = params["from"] {
            guard let n = UInt64(f) else { throw bad("from must be a block number") }
            loc.fromBlock = n
        }
        return loc
    }

    /// The canonical text of this location (parameters in a fixed order).
    public var text: String {
        func enc(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s }
        var s = "evm+" + endpoints[0] + "?chain=\(chainID)&rental=\(rental.checksummed)&audit=\(audit.checksummed)"
        if block != "finalized" { s += "&block=\(block)" }
        for e in endpoints.dropFirst() { s += "&rpc=" + enc(e) }
        if quorum != endpoints.count { s += "&quorum=\(quorum)" }
        if timeout != 60 { s += "&timeout=\(timeout == timeout.rounded() ? String(Int(timeout)) : String(timeout))" }
        if fromBlock != 0 { s += "&from=\(fromBlock)" }
        return s
    }
}

/// A block the engine reads at: its number, hash and timestamp, agreed by the endpoints.
public struct PinnedBlock: Equatable, Sendable {
    public let number: UInt64
    public let hash: [UInt8]
    public let timestamp: UInt64
    public let baseFee: UInt64?
}

/// A mined transaction's receipt.
public struct EVMReceipt: Equatable, Sendable {
    public let transactionHash: [UInt8]
    public let blockNumber: UInt64
    public let blockHash: [UInt8]
    public let status: UInt64
    public let gasUsed: UInt64
    public let contractAddress: Address?
}

public final class EVMLedger {
    public let location: EVMLocation
    let rpc: RPCQuorum
    let logger: Logger
    /// Serializes writes (nonces) and the event cache.
    private let lock = NSLock()
    private var nonces: [Address: UInt64] = [:]
    private var nextBlock: UInt64
    private var cache: [Event] = []
    private var cacheTx: [[UInt8]] = []
    private var datasetNames: [[UInt8]: String] = [:]
    private var blockTimes: [UInt64: UInt64] = [:]
    /// The error the last non-throwing query met (it then answered nil or nothing: fail
    /// closed); nil when it succeeded.
    public private(set) var lastError: LedgerError?
    /// Gas used by the last transaction this engine sent (docs/ledger.md §7.4 measures with it).
    public private(set) var lastGasUsed: UInt64 = 0

    public var origin: String { "evm:\(location.chainID)/\(location.rental.checksummed)" }

    public convenience init(_ text: String, logger: Logger = Logger(label: "cce4.ledger.evm")) throws(LedgerError) {
        try self.init(location: try EVMLocation.parse(text), logger: logger)
    }

    /// Connects: every endpoint must serve the location's chain id, and both contracts must be
    /// deployed there.
    public init(location: EVMLocation, logger: Logger = Logger(label: "cce4.ledger.evm")) throws(LedgerError) {
        self.location = location
        self.logger = logger
        rpc = RPCQuorum(urls: location.endpoints, quorum: location.quorum, timeout: location.timeout, logger: logger)
        nextBlock = location.fromBlock
        let chain = try Self.chainID(rpc)
        guard chain == location.chainID else {
            throw .io("chain id mismatch: the RPC endpoints serve chain \(chain), but the ledger location says chain=\(location.chainID); nothing is read or sent")
        }
        for (name, a) in [("rental", location.rental), ("audit", location.audit)] {
            let code: [UInt8]
            do { code = try rpc.agree("eth_getCode", [a.checksummed, "latest"], Quantity.bytes) } catch { throw Self.map(error) }
            guard !code.isEmpty else { throw .io("no contract at \(name)=\(a.checksummed) on chain \(chain): deploy one with `cce4 ledger deploy`") }
        }
    }

    static func chainID(_ rpc: RPCQuorum) throws(LedgerError) -> UInt64 {
        do { return try rpc.agree("eth_chainId", [], Quantity.uint64) } catch { throw map(error) }
    }

    static func map(_ e: RPCError) -> LedgerError {
        switch e.kind {
        case .reverted: return .refused(e.reason ?? "the contract refused (no reason given)")
        default: return .io("ledger chain: \(e.message)")
        }
    }

    /// Runs `body` holding the lock (NSLock.withLock is rethrows: typed throws would be lost).
    func locked<R>(_ body: () throws(LedgerError) -> R) throws(LedgerError) -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    func agree<T: Equatable>(_ method: String, _ params: [Any], _ parse: (Any) -> T?) throws(LedgerError) -> T {
        do { return try rpc.agree(method, params, parse) } catch { throw Self.map(error) }
    }

    // MARK: - Blocks and calls

    static func parseBlock(_ any: Any) -> PinnedBlock? {
        guard let o = any as? [String: Any], let n = o["number"].flatMap(Quantity.uint64), let h = o["hash"].flatMap(Quantity.bytes), h.count == 32,
              let t = o["timestamp"].flatMap(Quantity.uint64) else { return nil }
        return PinnedBlock(number: n, hash: h, timestamp: t, baseFee: o["baseFeePerGas"].flatMap(Quantity.uint64))
    }

    /// The block reads use: the lowest block any endpoint reports for the tag, then that block
    /// as every endpoint has it (same hash and timestamp, or a disagreement).
    public func pin() throws(LedgerError) -> PinnedBlock {
        let tag = rpc.each("eth_getBlockByNumber", [location.block, false], Self.parseBlock)
        var numbers: [UInt64] = []
        for o in tag { if case .value(let b) = o { numbers.append(b.number) } }
        guard numbers.count >= rpc.quorum, let n = numbers.min() else {
            // Let agree() report the failures.
            return try agree("eth_getBlockByNumber", [location.block, false], Self.parseBlock)
        }
        return try agree("eth_getBlockByNumber", [Quantity.hex(n), false], Self.parseBlock)
    }

    /// eth_call of `data` on `to` at block `at` (a number, or a tag).
    func call(_ to: Address, _ data: [UInt8], at block: Any) throws(LedgerError) -> ABIReader {
        let block = (block as? UInt64).map(Quantity.hex) ?? block
        return ABIReader(try agree("eth_call", [["to": to.checksummed, "data": Quantity.data(data)], block], Quantity.bytes))
    }

    func decode<T>(_ body: (ABIReader) throws(ABIError) -> T, _ r: ABIReader, _ what: String) throws(LedgerError) -> T {
        do { return try body(r) } catch { throw .io("ledger chain: \(what): \(error)") }
    }

    /// The dataset's token id: uint256(keccak256(dataset id)).
    public static func tokenID(_ dataset: String) -> [UInt8] { Keccak256.hash(Array(dataset.utf8)) }

    // MARK: - Queries

    func datasetName(_ key: [UInt8], at b: PinnedBlock) throws(LedgerError) -> String {
        let r = try call(location.rental, ABI.call("datasetName(uint256)", [.uint256(key)]), at: b.number)
        return try decode({ (r) throws(ABIError) in try r.string(0, max: 64) }, r, "datasetName")
    }

    func queryDataset(_ id: String) throws(LedgerError) -> DatasetRecord? {
        try Validate.datasetID(id)
        let b = try pin()
        let key = Self.tokenID(id)
        let name = try datasetName(key, at: b)
        guard !name.isEmpty else { return nil }
        guard name == id else { throw .io("ledger chain: the registry names token \(Hex.encode(key)) '\(name)', not '\(id)'") }
        let owner = try decode({ (r) throws(ABIError) in try r.address(0) }, try call(location.rental, ABI.call("ownerOf(uint256)", [.uint256(key)]), at: b.number), "ownerOf")
        let policy = try decode({ (r) throws(ABIError) in try r.bytes32(0) }, try call(location.rental, ABI.call("policyHash(uint256)", [.uint256(key)]), at: b.number), "policyHash")
        var roots: [[UInt8]] = []
        while true {
            let r = try call(location.rental, ABI.call("versionRoots(uint256,uint256)", [.uint256(key), .uint(UInt64(roots.count))]), at: b.number)
            let page = try decode({ (r) throws(ABIError) in try r.array(0, width: 1).map { (e) throws(ABIError) in try e.bytes32(0) } }, r, "versionRoots")
            roots += page
            if page.count < 256 { break }
        }
        // The entry index of each version is its event's index, when the events are loaded.
        let versionEvents = lock.withLock { cache.filter { $0.dataset == id && $0.kind == EntryKind.datasetVersion.name } }
        let versions = roots.map { root -> (root: [UInt8], entry: UInt64) in
            let index = versionEvents.first { if case .registerVersion(_, let r) = $0.operation { return r == root }; return false }?.index
            return (root, index ?? 0)
        }
        return DatasetRecord(id: id, owner: owner, policyHash: policy, versions: versions)
    }

    /// The dataset's rentals as stored at block `b`: (id, user, expires).
    func rentals(of key: [UInt8], at b: PinnedBlock) throws(LedgerError) -> [(id: UInt64, user: Address, expires: UInt64)] {
        var out: [(id: UInt64, user: Address, expires: UInt64)] = []
        while true {
            let r = try call(location.rental, ABI.call("rentals(uint256,uint256)", [.uint256(key), .uint(UInt64(out.count))]), at: b.number)
            let page = try decode({ (r) throws(ABIError) in
                try r.array(0, width: 3).map { (e) throws(ABIError) -> (id: UInt64, user: Address, expires: UInt64) in (try e.uint64(0), try e.address(1), try e.uint64(2)) }
            }, r, "rentals")
            out += page
            if page.count < 256 { break }
        }
        return out
    }

    /// ERC-4907 at the pinned block: a rental of `dataset` whose user is `user` and whose
    /// `userExpires` is after both the block's timestamp and `time`.
    func queryActiveRental(dataset: String, user: Address, at time: UInt64) throws(LedgerError) -> Rental? {
        try Validate.datasetID(dataset)
        let b = try pin()
        let key = Self.tokenID(dataset)
        guard try datasetName(key, at: b) == dataset else { return nil }
        guard let r = try rentals(of: key, at: b).first(where: { $0.user == user && user != .zero && b.timestamp < $0.expires && time < $0.expires }) else { return nil }
        return Rental(id: r.id, dataset: dataset, history: [(time: 0, user: r.user, expires: r.expires)])
    }

    // MARK: - Events

    static let topics: [String: [UInt8]] = [
        "register": ABI.topic("DatasetRegistered(uint256,address,address,string,bytes32)"),
        "version": ABI.topic("VersionAdded(uint256,address,bytes32)"),
        "rental": ABI.topic("RentalSet(uint256,uint256,address,address,uint64)"),
        "audit": ABI.topic("Recorded(address,uint256,string,string,bytes32)"),
        "approval": ABI.topic("OperatorApproved(address,address,address,uint64,uint64,uint8,bytes32,bytes32)"),
    ]

    struct Log: Equatable {
        let address: Address
        let topics: [[UInt8]]
        let data: [UInt8]
        let blockNumber: UInt64
        let logIndex: UInt64
        let transactionHash: [UInt8]
    }

    static func parseLogs(_ any: Any) -> [Log]? {
        guard let list = any as? [Any] else { return nil }
        var out: [Log] = []
        for item in list {
            guard let o = item as? [String: Any], let a = o["address"] as? String, let addr = try? Address(a),
                  let ts = o["topics"] as? [Any], let data = o["data"].flatMap(Quantity.bytes),
                  let n = o["blockNumber"].flatMap(Quantity.uint64), let i = o["logIndex"].flatMap(Quantity.uint64),
                  let tx = o["transactionHash"].flatMap(Quantity.bytes), o["removed"] as? Bool != true else { return nil }
            let topics = ts.compactMap { Quantity.bytes($0) }
            guard topics.count == ts.count, topics.allSatisfy({ $0.count == 32 }) else { return nil }
            out.append(Log(address: addr, topics: topics, data: data, blockNumber: n, logIndex: i, transactionHash: tx))
        }
        return out
    }

    /// Reads the contracts' events up to block `last` into the cache.
    func loadEvents(upTo last: UInt64) throws(LedgerError) {
        try locked { () throws(LedgerError) in
            while nextBlock <= last {
                let to = min(last, nextBlock + 4999)
                let filter: [String: Any] = ["address": [location.rental.checksummed, location.audit.checksummed],
                                             "fromBlock": Quantity.hex(nextBlock), "toBlock": Quantity.hex(to)]
                let logs = try agree("eth_getLogs", [filter], Self.parseLogs)
                    .sorted { ($0.blockNumber, $0.logIndex) < ($1.blockNumber, $1.logIndex) }
                for log in logs {
                    guard (nextBlock...to).contains(log.blockNumber), log.address == location.rental || log.address == location.audit else {
                        throw .io("ledger chain: eth_getLogs answered a log outside the filter (block \(log.blockNumber), \(log.address))")
                    }
                    guard let e = try event(from: log) else { continue }
                    cache.append(e)
                    cacheTx.append(log.transactionHash)
                }
                nextBlock = to + 1
            }
        }
    }

    func blockTime(_ n: UInt64) throws(LedgerError) -> UInt64 {
        if let t = blockTimes[n] { return t }
        let b = try agree("eth_getBlockByNumber", [Quantity.hex(n), false], Self.parseBlock)
        guard b.number == n else { throw .io("ledger chain: asked for block \(n), got \(b.number)") }
        blockTimes[n] = b.timestamp
        return b.timestamp
    }

    /// The ledger event a contract log records, or nil for logs that are not ledger events
    /// (Transfer, UpdateUser, approvals…).
    func event(from log: Log) throws(LedgerError) -> Event? {
        guard let t0 = log.topics.first else { return nil }
        let r = ABIReader(log.data)
        func fail(_ why: String) -> LedgerError { .io("ledger chain: a malformed event in block \(log.blockNumber) (log \(log.logIndex)): \(why)") }
        func topicAddress(_ i: Int) throws(LedgerError) -> Address {
            guard log.topics.count > i, log.topics[i].prefix(12).allSatisfy({ $0 == 0 }) else { throw fail("topic \(i) is not an address") }
            return Address(bytes: Array(log.topics[i].suffix(20)))
        }
        func topicU64(_ i: Int) throws(LedgerError) -> UInt64 {
            guard log.topics.count > i, log.topics[i].prefix(24).allSatisfy({ $0 == 0 }) else { throw fail("topic \(i) is not a rental id") }
            return log.topics[i].suffix(8).reduce(0) { $0 << 8 | UInt64($1) }
        }
        func name(_ key: [UInt8]) throws(LedgerError) -> String {
            guard let n = datasetNames[key] else { throw fail("it names a dataset that was never registered") }
            return n
        }
        let op: Operation
        let actor: Address
        do {
            if log.address == location.rental && t0 == Self.topics["register"]! {
                guard log.topics.count == 4 else { throw fail("wrong topics") }
                let d = try r.string(0, max: 64), policy = try r.bytes32(1)
                guard Self.tokenID(d) == log.topics[1] else { throw fail("the dataset id does not hash to its token id") }
                datasetNames[log.topics[1]] = d
                actor = try topicAddress(3)
                op = .registerDataset(dataset: d, policyHash: policy, owner: try topicAddress(2))
            } else if log.address == location.rental && t0 == Self.topics["version"]! {
                guard log.topics.count == 3 else { throw fail("wrong topics") }
                actor = try topicAddress(2)
                op = .registerVersion(dataset: try name(log.topics[1]), root: try r.bytes32(0))
            } else if log.address == location.rental && t0 == Self.topics["rental"]! {
                guard log.topics.count == 4 else { throw fail("wrong topics") }
                let id = try topicU64(1), d = try name(log.topics[2]), user = try r.address(0), expires = try r.uint64(1)
                actor = try topicAddress(3)
                op = user == .zero ? .endRental(dataset: d, rentalID: id) : .setRental(dataset: d, rentalID: id, user: user, expires: expires)
            } else if log.address == location.rental && t0 == Self.topics["approval"]! {
                guard log.topics.count == 4 else { throw fail("wrong topics") }
                let v = try r.uint64(2)
                guard v == 27 || v == 28 else { throw fail("v is not 27 or 28") }
                let sig = Signature(r: try r.bytes32(3), s: try r.bytes32(4), recoveryID: UInt8(v - 27))
                actor = try topicAddress(3)
                op = .approveOperator(OperatorApproval(owner: try topicAddress(1), operator: try topicAddress(2), expires: try r.uint64(0), nonce: try r.uint64(1), signature: sig))
            } else if log.address == location.audit && t0 == Self.topics["audit"]! {
                guard log.topics.count == 3 else { throw fail("wrong topics") }
                actor = try topicAddress(1)
                let kind = try r.string(0, max: 64), d = try r.string(1, max: 64)
                op = .audit(event: kind, dataset: d.isEmpty ? nil : d, payloadHash: try r.bytes32(2))
            } else {
                return nil
            }
        } catch let e as ABIError { throw fail(e.description) } catch let e as LedgerError { throw e } catch { throw fail("\(error)") }
        let time = try blockTime(log.blockNumber)
        return Event(index: UInt64(cache.count), time: time, kind: op.eventName, actor: actor, dataset: op.dataset, operation: op)
    }

    // MARK: - Writes

    /// What an operation sends: (contract, calldata).
    func plan(_ op: Operation, actor: Address) throws(LedgerError) -> (Address, [UInt8]) {
        let rental = location.rental
        switch op {
        case .registerDataset(let d, let policy, let owner):
            return (rental, ABI.call("register(string,bytes32,address)", [.string(d), .bytes32(policy), .address(owner)]))
        case .approveOperator(let a):
            // Checked here too, for the embedded engine's messages; the contract checks it again.
            try a.verify(domain: approvalDomain)
            return (rental, ABI.call("approveOperatorBySig(address,address,uint64,uint64,uint8,bytes32,bytes32)",
                                     [.address(a.owner), .address(a.operator), .uint(a.expires), .uint(a.nonce),
                                      .uint(27 + UInt64(a.signature.recoveryID)), .bytes32(a.signature.r), .bytes32(a.signature.s)]))
        case .registerVersion(let d, let root):
            return (rental, ABI.call("addVersion(uint256,bytes32)", [.uint256(Self.tokenID(d)), .bytes32(root)]))
        case .setRental(let d, let id, let user, let expires):
            let key = Self.tokenID(d)
            if id != 0 {
                let owner = try rentalDataset(id)
                if owner == [UInt8](repeating: 0, count: 32) {
                    let next = nextRentalIDOnChain()
                    guard id == next else { throw .refused("rental \(id) does not exist (the next new rental is \(next))") }
                } else {
                    guard owner == key else { throw .refused("rental \(id) is a rental of another dataset, not '\(d)'") }
                    return (rental, ABI.call("setUser(uint256,address,uint64)", [.uint(id), .address(user), .uint(expires)]))
                }
            }
            return (rental, ABI.call("rent(uint256,address,uint64)", [.uint256(key), .address(user), .uint(expires)]))
        case .endRental(let d, let id):
            guard try rentalDataset(id) == Self.tokenID(d) else { throw .refused("dataset '\(d)' has no rental \(id)") }
            return (rental, ABI.call("endRental(uint256)", [.uint(id)]))
        case .audit(let kind, let d, let payload):
            return (location.audit, ABI.call("record(string,string,bytes32)", [.string(kind), .string(d ?? ""), .bytes32(payload)]))
        }
    }

    func rentalDataset(_ id: UInt64) throws(LedgerError) -> [UInt8] {
        let r = try call(location.rental, ABI.call("rentalDataset(uint256)", [.uint(id)]), at: "latest")
        return try decode({ (r) throws(ABIError) in try r.uint256(0) }, r, "rentalDataset")
    }

    func nextRentalIDOnChain() -> UInt64 {
        do {
            let r = try call(location.rental, ABI.call("nextRentalId()", []), at: "latest")
            return try decode({ (r) throws(ABIError) in try r.uint64(0) }, r, "nextRentalId")
        } catch { lastError = error; return 0 }
    }

    /// Builds, signs and sends a transaction calling `to` with `data` (nil `to`: a deployment),
    /// and waits for its receipt. A revert (when estimating gas, or once mined) is `.refused`
    /// with the contract's reason.
    @discardableResult
    public func transact(_ signer: PrivateKey, to: Address?, data: [UInt8]) throws(LedgerError) -> EVMReceipt {
        let me = signer.address
        var call: [String: Any] = ["from": me.checksummed, "data": Quantity.data(data)]
        if let to { call["to"] = to.checksummed }
        let estimate = try agree("eth_estimateGas", [call], Quantity.uint64)
        let gas = estimate + estimate / 4 + 10_000
        let tip: UInt64
        do { tip = try rpc.agree("eth_maxPriorityFeePerGas", [], Quantity.uint64) } catch {
            // Not every node has it: fall back to the median tip of the last blocks.
            tip = (try? feeHistoryTip()) ?? 1_000_000_000
        }
        let base = try nextBaseFee()
        let (maxFee, overflow) = base.multipliedReportingOverflow(by: 2)
        guard !overflow, maxFee.addingReportingOverflow(tip).overflow == false else { throw .io("ledger chain: fee estimate out of range") }
        for attempt in 0..<3 {
            let chainNonce = try agree("eth_getTransactionCount", [me.checksummed, "pending"], Quantity.uint64)
            let nonce = max(chainNonce, lock.withLock { nonces[me] } ?? 0)
            let tx = EIP1559Transaction(chainID: location.chainID, nonce: nonce, maxPriorityFeePerGas: tip, maxFeePerGas: maxFee + tip,
                                        gas: gas, to: to, data: data)
            let signed: (raw: [UInt8], hash: [UInt8])
            do { signed = try tx.signed(by: signer) } catch { throw .io("signing the transaction failed: \(error)") }
            let outcomes = rpc.each("eth_sendRawTransaction", [Quantity.data(signed.raw)], Quantity.bytes)
            var accepted = 0
            var errors: [String] = []
            var nonceTooLow = false
            for (ep, o) in zip(rpc.endpoints, outcomes) {
                switch o {
                case .value(let h) where h == signed.hash: accepted += 1
                case .value: errors.append("\(ep.label) answered a different transaction hash")
                case .reverted(_, let reason): errors.append("\(ep.label): reverted: \(reason ?? "")")
                case .failed(let e):
                    let m = e.message.lowercased()
                    if m.contains("already known") || m.contains("already imported") { accepted += 1; continue }
                    // geth/anvil: "nonce too low"; py-evm: "Invalid transaction nonce: Expected N, but got M";
                    // geth with a mempool: "replacement transaction underpriced" when another writer
                    // with this key (a plane replica, or the plane's key-release engine) has a
                    // transaction with this nonce pending: the pending count now includes it.
                    if m.contains("nonce too low") || m.contains("nonce is too low") || m.contains("invalid transaction nonce")
                        || m.contains("replacement transaction underpriced") { nonceTooLow = true }
                    errors.append(e.message)
                }
            }
            if accepted == 0 {
                // Another writer with the same key took the nonce: ask the chain again.
                if nonceTooLow && attempt < 2 { lock.withLock { nonces[me] = nil }; continue }
                throw .io("ledger chain: no RPC endpoint accepted the transaction: " + errors.joined(separator: "; "))
            }
            if !errors.isEmpty { logger.warning("some RPC endpoints refused a transaction", metadata: ["errors": "\(errors.joined(separator: "; "))"]) }
            lock.withLock { nonces[me] = nonce + 1 }
            let receipt = try awaitReceipt(signed.hash)
            lastGasUsed = receipt.gasUsed
            guard receipt.status == 1 else {
                // Replay the call at the block it was mined in to learn why.
                var reason = "no reason given"
                do { _ = try rpc.agree("eth_call", [call, Quantity.hex(receipt.blockNumber)], Quantity.bytes) } catch {
                    if error.kind == .reverted, let r = error.reason { reason = r }
                }
                throw .refused("\(reason) (transaction \(Quantity.data(signed.hash)) reverted in block \(receipt.blockNumber))")
            }
            return receipt
        }
        throw .io("ledger chain: the transaction's nonce was refused three times (another writer is using this key)")
    }

    func feeHistoryTip() throws(LedgerError) -> UInt64 {
        let tips = try agree("eth_feeHistory", [Quantity.hex(5), "latest", [50]]) { any -> [UInt64]? in
            guard let o = any as? [String: Any], let rewards = o["reward"] as? [[Any]] else { return nil }
            return rewards.compactMap { $0.first.flatMap(Quantity.uint64) }
        }
        return tips.sorted().dropFirst(tips.count / 2).first ?? 1_000_000_000
    }

    /// The base fee of the next block (eth_feeHistory's last baseFeePerGas).
    func nextBaseFee() throws(LedgerError) -> UInt64 {
        try agree("eth_feeHistory", [Quantity.hex(1), "latest", [] as [Int]]) { any -> UInt64? in
            guard let o = any as? [String: Any], let fees = o["baseFeePerGas"] as? [Any], let last = fees.last else { return nil }
            return Quantity.uint64(last)
        }
    }

    static func parseReceipt(_ any: Any) -> EVMReceipt?? {
        if any is NSNull { return .some(nil) }
        guard let o = any as? [String: Any], let h = o["transactionHash"].flatMap(Quantity.bytes), let n = o["blockNumber"].flatMap(Quantity.uint64),
              let bh = o["blockHash"].flatMap(Quantity.bytes), let s = o["status"].flatMap(Quantity.uint64),
              let g = o["gasUsed"].flatMap(Quantity.uint64) else { return nil }
        let ca = (o["contractAddress"] as? String).flatMap { try? Address($0) }
        return .some(EVMReceipt(transactionHash: h, blockNumber: n, blockHash: bh, status: s, gasUsed: g, contractAddress: ca))
    }

    /// Polls for the receipt until the endpoints agree on it, or the location's timeout.
    func awaitReceipt(_ hash: [UInt8]) throws(LedgerError) -> EVMReceipt {
        let deadline = Date().addingTimeInterval(location.timeout)
        var delay = 0.02
        var last = "no endpoint has it yet"
        while true {
            let outcomes = rpc.each("eth_getTransactionReceipt", [Quantity.data(hash)], Self.parseReceipt)
            var receipts: [EVMReceipt] = []
            var answered = 0
            for o in outcomes {
                switch o {
                case .value(let r): answered += 1; if let r { receipts.append(r) }
                case .reverted: break
                case .failed(let e): last = e.message
                }
            }
            if let r = receipts.first, receipts.count == answered, answered >= rpc.quorum {
                guard receipts.allSatisfy({ $0 == r }) else {
                    throw .io("ledger chain: RPC endpoints disagree on the receipt of \(Quantity.data(hash)) (block or status differ); it is not trusted")
                }
                guard r.transactionHash == hash else { throw .io("ledger chain: an endpoint answered the receipt of another transaction") }
                return r
            }
            if !receipts.isEmpty { last = "\(receipts.count) of \(rpc.endpoints.count) endpoints have it" }
            guard Date() < deadline else {
                throw .io("ledger chain: no receipt for transaction \(Quantity.data(hash)) after \(location.timeout) s (\(last)); it may still be mined: check before retrying")
            }
            Thread.sleep(forTimeInterval: delay)
            delay = min(delay * 2, 1)
        }
    }

    // MARK: - Deployment and administration

    /// Deploys Rentals.vy and Audit.vy (contracts/build) from `signer` to the chain at `rpcURL`;
    /// the location of the new ledger (events read from the deployment block on).
    public static func deploy(rpcURL: String, signer: PrivateKey, block: String = "finalized", timeout: Double = 60,
                              logger: Logger = Logger(label: "cce4.ledger.evm")) throws(LedgerError) -> EVMLocation {
        let probe = RPCQuorum(urls: [rpcURL], timeout: timeout, logger: logger)
        let chain = try chainID(probe)
        // A location whose contracts are not there yet: used only to send the deployments.
        var loc = EVMLocation(endpoints: [rpcURL], chainID: chain, rental: .zero, audit: .zero, block: block, timeout: timeout)
        let deployer = EVMLedger(unchecked: loc, logger: logger)
        let rentals = try deployer.transact(signer, to: nil, data: Hex.decode(String(EVMContracts.rentals.dropFirst(2)))!)
        guard let r = rentals.contractAddress else { throw .io("ledger chain: the Rentals deployment receipt names no contract") }
        let audit = try deployer.transact(signer, to: nil, data: Hex.decode(String(EVMContracts.audit.dropFirst(2)))! + ABI.encode([.address(r)]))
        guard let a = audit.contractAddress else { throw .io("ledger chain: the Audit deployment receipt names no contract") }
        loc.rental = r; loc.registry = r; loc.audit = a; loc.fromBlock = rentals.blockNumber
        return loc
    }

    init(unchecked location: EVMLocation, logger: Logger) {
        self.location = location; self.logger = logger
        rpc = RPCQuorum(urls: location.endpoints, quorum: location.quorum, timeout: location.timeout, logger: logger)
        nextBlock = location.fromBlock
    }

    /// Records an embedded ledger's checkpoint (origin, size, root) in the Audit contract, so
    /// the chain witnesses the file's tree head; the key is keccak256(origin). Allow-listed
    /// writers only; a smaller size than the last is refused.
    @discardableResult
    public func publishCheckpoint(_ cp: Checkpoint, signer: PrivateKey) throws(LedgerError) -> EVMReceipt {
        guard cp.root.count == 32 else { throw .invalidArgument("a checkpoint root is 32 bytes") }
        return try transact(signer, to: location.audit, data: ABI.call("checkpoint(bytes32,uint64,bytes32)",
                                                                       [.bytes32(Keccak256.hash(Array(cp.origin.utf8))), .uint(cp.size), .bytes32(cp.root)]))
    }

    /// The last checkpoint recorded for `origin` at the pinned block: (size, root), nil if none.
    public func publishedCheckpoint(origin: String) throws(LedgerError) -> (size: UInt64, root: [UInt8])? {
        let b = try pin()
        let key = Keccak256.hash(Array(origin.utf8))
        let size = try decode({ (r) throws(ABIError) in try r.uint64(0) }, try call(location.audit, ABI.call("checkpointSize(bytes32)", [.bytes32(key)]), at: b.number), "checkpointSize")
        guard size > 0 else { return nil }
        let root = try decode({ (r) throws(ABIError) in try r.bytes32(0) }, try call(location.audit, ABI.call("checkpointRoot(bytes32)", [.bytes32(key)]), at: b.number), "checkpointRoot")
        return (size, root)
    }

    /// Allows (or stops) `writer` recording audit events; `admin` must be the Audit contract's deployer.
    public func setAuditWriter(_ writer: Address, allowed: Bool, admin: PrivateKey) throws(LedgerError) {
        try transact(admin, to: location.audit, data: ABI.call("setWriter(address,bool)", [.address(writer), .bool(allowed)]))
    }
}

extension EVMLedger: LedgerEngine {
    @discardableResult
    public func submit(_ op: Operation, signer: PrivateKey) throws(LedgerError) -> Event {
        // Rental id 0 asks for a new rental (the contract assigns its id): validate the rest.
        if case .setRental(let d, 0, let u, let x) = op { try Validate.operation(.setRental(dataset: d, rentalID: 1, user: u, expires: x)) } else { try Validate.operation(op) }
        let (to, data) = try plan(op, actor: signer.address)
        let receipt = try transact(signer, to: to, data: data)
        try loadEvents(upTo: receipt.blockNumber)
        return try locked { () throws(LedgerError) -> Event in
            guard let i = cacheTx.lastIndex(of: receipt.transactionHash) else {
                throw .io("ledger chain: transaction \(Quantity.data(receipt.transactionHash)) was mined but its event is not in eth_getLogs")
            }
            return cache[i]
        }
    }

    public func refresh() throws(LedgerError) { try loadEvents(upTo: try pin().number) }

    public func dataset(_ id: String) -> DatasetRecord? {
        lastError = nil
        do { return try queryDataset(id) } catch { lastError = error; return nil }
    }

    public func activeRental(dataset: String, user: Address, at time: UInt64) -> Rental? {
        lastError = nil
        do { return try queryActiveRental(dataset: dataset, user: user, at: time) } catch { lastError = error; return nil }
    }

    public func events(matching filter: EventFilter) -> [Event] {
        lastError = nil
        do { try refresh() } catch { lastError = error; return [] }
        return lock.withLock { cache }.filter { e in
            (filter.dataset == nil || e.dataset == filter.dataset) && (filter.actor == nil || e.actor == filter.actor) && (filter.kind == nil || e.kind == filter.kind)
                && (filter.since == nil || e.time >= filter.since!) && (filter.until == nil || e.time < filter.until!)
        }
    }

    public var nextRentalID: UInt64 { nextRentalIDOnChain() }

    /// name "cce4long", version "1", the chain's id, the Rentals contract (which stores the
    /// approvals and checks their signatures with ecrecover), salt 32 zero bytes.
    public var approvalDomain: EIP712Domain {
        // Cannot throw: the salt is 32 bytes.
        try! EIP712Domain(name: "cce4long", version: "1", chainId: location.chainID, verifyingContract: location.rental, salt: [UInt8](repeating: 0, count: 32))
    }

    /// At the pinned block: the approval's expiry is after both the block's timestamp and `time`.
    public func isOperator(_ operator: Address, of owner: Address, at time: UInt64) -> Bool {
        lastError = nil
        do {
            let b = try pin()
            let r = try call(location.rental, ABI.call("operatorExpires(address,address)", [.address(owner), .address(`operator`)]), at: b.number)
            let expires = try decode({ (r) throws(ABIError) in try r.uint64(0) }, r, "operatorExpires")
            return b.timestamp < expires && time < expires
        } catch { lastError = error; return false }
    }

    /// At the latest block (the next approval must exceed it; UInt64.max when unreadable, so
    /// no approval is built on a guess).
    public func approvalNonce(of owner: Address) -> UInt64 {
        do {
            let r = try call(location.rental, ABI.call("approvalNonce(address)", [.address(owner)]), at: "latest")
            return try decode({ (r) throws(ABIError) in try r.uint64(0) }, r, "approvalNonce")
        } catch { lastError = error; return UInt64.max }
    }
}
