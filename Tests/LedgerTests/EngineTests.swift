// The ledger's rules, run unchanged against both engines: the embedded file and the EVM
// chain (contracts/*.vy on the evm-devnet, through EVMLedger over JSON-RPC). Each test gets a
// fresh ledger: a new file, or freshly deployed contracts. Time is the engine's: the embedded
// engine is told each entry's time; on the chain the harness sets the next block's timestamp
// (evm_setNextBlockTimestamp, evm_mine), so times only move forward within a test.
import EVM
import Envelope
import Foundation
import TestSupport
import Testing
import Wallet
@testable import Ledger

enum EngineKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case embedded, evm
    var testDescription: String { rawValue }
}

/// The chain the EVM tests share (one devnet per test process; tests deploy their own contracts).
enum Chain {
    static let devnet: EVMDevnet = {
        let fund = (1...9).map { try! key(UInt8($0)).address.checksummed }
        do { return try EVMDevnet(fund: fund) } catch { fatalError("\(error)") }
    }()
    static var deployer: PrivateKey { try! PrivateKey(bytes: Hex.decode(String(devnet.keys[0].dropFirst(2)))!) }
    static let endpoint = RPCEndpoint(url: devnet.url, timeout: 30)

    /// A test control or plain call to the devnet.
    @discardableResult
    static func rpc(_ method: String, _ params: [Any] = []) throws -> Any {
        let body = try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": 1, "method": method, "params": params] as [String: Any])
        return try endpoint.post(Array(body), method: method, id: 1)
    }
    static func latestTime() throws -> UInt64 {
        let b = try rpc("eth_getBlockByNumber", ["latest", false]) as! [String: Any]
        return Quantity.uint64(b["timestamp"]!)!
    }
    /// Fresh contracts, every test key allowed to record audit events.
    static func deploy(block: String = "finalized") throws -> EVMLedger {
        let loc = try EVMLedger.deploy(rpcURL: devnet.url, signer: deployer, block: block)
        let l = try EVMLedger(location: loc)
        for s in 1...9 { try l.setAuditWriter(try key(UInt8(s)).address, allowed: true, admin: deployer) }
        return l
    }
}

/// One engine under test, with a clock the test drives.
final class Harness {
    let kind: EngineKind
    let engine: any LedgerEngine
    private let dir = TempDir()
    private var embedded: EmbeddedLedger? { engine as? EmbeddedLedger }

    init(_ kind: EngineKind) throws {
        self.kind = kind
        switch kind {
        case .embedded: engine = try EmbeddedLedger.create(path: dir.sub("ledger"))
        case .evm: engine = try Chain.deploy()
        }
    }

    /// A time after everything the engine has recorded.
    func start() throws -> UInt64 {
        switch kind {
        case .embedded: return UInt64(Date().timeIntervalSince1970) - 1_000_000
        case .evm: return try Chain.latestTime() + 10
        }
    }

    /// Submits `op` as `signer` at time `t` (the chain: the next block's timestamp, when it is
    /// still in the future).
    @discardableResult
    func submit(_ op: Ledger.Operation, _ signer: PrivateKey, at t: UInt64) throws -> Event {
        switch kind {
        case .embedded:
            try embedded!.append(op, signer: signer, time: t)
            return embedded!.state.events.last!
        case .evm:
            if t > (try Chain.latestTime()) { try Chain.rpc("evm_setNextBlockTimestamp", [t]) }
            return try engine.submit(op, signer: signer)
        }
    }

    /// The active rental at `t` (the chain: after mining a block at `t`; never in the past).
    func active(_ dataset: String, _ user: PrivateKey, at t: UInt64) throws -> UInt64? {
        if kind == .evm {
            let now = try Chain.latestTime()
            try #require(t >= now, "the chain cannot be asked about the past")
            if t > now { try Chain.rpc("evm_mine", [t]) }
        }
        return engine.activeRental(dataset: dataset, user: user.address, at: t)?.id
    }

    func refused(_ op: Ledger.Operation, by k: PrivateKey, at t: UInt64, _ contains: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) { try self.submit(op, k, at: t) } throws: { e in
            guard case LedgerError.refused(let why) = e else { return false }
            return why.contains(contains)
        }
    }
}

/// Every test that uses the shared devnet, one at a time: they move its clock.
@Suite(.serialized) struct OnChain {}

extension OnChain {
@Suite struct EngineRules {
    /// ERC-4907 at the boundaries: active until `expires` (exclusive), ended early, re-rented,
    /// two rentals of one dataset at once.
    @Test(arguments: EngineKind.allCases) func rentalsFollowERC4907(_ kind: EngineKind) throws {
        let h = try Harness(kind)
        let owner = try key(1), alice = try key(2), bob = try key(3)
        let t0 = try h.start()
        try h.submit(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), owner, at: t0)
        try h.submit(.registerVersion(dataset: "aging", root: root(1)), owner, at: t0 + 1)
        let e1 = try h.submit(.setRental(dataset: "aging", rentalID: 0, user: alice.address, expires: t0 + 100), owner, at: t0 + 10)
        guard case .setRental(_, let r1, _, _) = e1.operation else { Issue.record("not a rental: \(e1)"); return }
        #expect(r1 == 1 && e1.kind == "rental.set" && e1.actor == owner.address && e1.time == t0 + 10)
        #expect(try h.active("aging", alice, at: t0 + 10) == r1, "active from the block it was granted in")
        #expect(try h.active("aging", bob, at: t0 + 10) == nil)
        let e2 = try h.submit(.setRental(dataset: "aging", rentalID: 0, user: bob.address, expires: t0 + 30), owner, at: t0 + 20)
        guard case .setRental(_, let r2, _, _) = e2.operation else { Issue.record("not a rental"); return }
        #expect(r2 == 2)
        #expect(try h.active("aging", bob, at: t0 + 29) == r2)
        #expect(try h.active("aging", bob, at: t0 + 30) == nil, "expired exactly at expires")
        #expect(try h.active("aging", alice, at: t0 + 31) == r1)
        // Ended early.
        try h.submit(.endRental(dataset: "aging", rentalID: r1), owner, at: t0 + 50)
        #expect(try h.active("aging", alice, at: t0 + 50) == nil)
        // Re-rented to someone else.
        try h.submit(.setRental(dataset: "aging", rentalID: r1, user: bob.address, expires: t0 + 500), owner, at: t0 + 60)
        #expect(try h.active("aging", bob, at: t0 + 60) == r1)
        #expect(try h.active("aging", alice, at: t0 + 60) == nil)
        #expect(try h.active("other", bob, at: t0 + 60) == nil)
        // A third rental, to alice, beside bob's.
        try h.submit(.setRental(dataset: "aging", rentalID: 0, user: alice.address, expires: t0 + 200), owner, at: t0 + 70)
        #expect(try h.active("aging", alice, at: t0 + 199) == 3)
        #expect(try h.active("aging", bob, at: t0 + 199) == r1)
        #expect(try h.active("aging", alice, at: t0 + 200) == nil)
        #expect(h.engine.nextRentalID == 4)
        let d = try #require(h.engine.dataset("aging"))
        #expect(d.owner == owner.address && d.policyHash == policy && d.versions.map(\.root) == [root(1)])
        #expect(h.engine.dataset("other") == nil)
        let events = h.engine.events(matching: EventFilter(dataset: "aging"))
        #expect(events.map(\.kind) == ["dataset.register", "dataset.version", "rental.set", "rental.set", "rental.end", "rental.set", "rental.set"])
        #expect(events.map(\.index) == Array(0..<7))
        #expect(events.map(\.time) == [t0, t0 + 1, t0 + 10, t0 + 20, t0 + 50, t0 + 60, t0 + 70])
    }

    @Test(arguments: EngineKind.allCases) func onlyTheOwnerRules(_ kind: EngineKind) throws {
        let h = try Harness(kind)
        let owner = try key(1), mallory = try key(4)
        let t = try h.start()
        try h.submit(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), owner, at: t)
        h.refused(.setRental(dataset: "aging", rentalID: 1, user: mallory.address, expires: t + 1000), by: mallory, at: t + 1, "only the owner")
        h.refused(.registerVersion(dataset: "aging", root: root(2)), by: mallory, at: t + 1, "only the owner")
        h.refused(.registerDataset(dataset: "aging", policyHash: policy, owner: mallory.address), by: mallory, at: t + 1, "already registered")
        h.refused(.registerDataset(dataset: "other", policyHash: policy, owner: owner.address), by: mallory, at: t + 1, "not the owner nor an operator")
        h.refused(.setRental(dataset: "nope", rentalID: 1, user: mallory.address, expires: t + 1000), by: owner, at: t + 1, "not registered")
        h.refused(.registerVersion(dataset: "nope", root: root(2)), by: owner, at: t + 1, "not registered")
        h.refused(.setRental(dataset: "aging", rentalID: 5, user: mallory.address, expires: t + 1000), by: owner, at: t + 1, "does not exist")
        h.refused(.setRental(dataset: "aging", rentalID: 1, user: mallory.address, expires: t), by: owner, at: t + 1, "expire")
        h.refused(.endRental(dataset: "aging", rentalID: 1), by: owner, at: t + 1, "no rental 1")
        try h.submit(.registerVersion(dataset: "aging", root: root(2)), owner, at: t + 1)
        h.refused(.registerVersion(dataset: "aging", root: root(2)), by: owner, at: t + 2, "already a version")
        try h.submit(.setRental(dataset: "aging", rentalID: 0, user: mallory.address, expires: t + 1000), owner, at: t + 2)
        h.refused(.endRental(dataset: "aging", rentalID: 1), by: mallory, at: t + 3, "only the owner")
        h.refused(.audit(event: "key.release", dataset: "nope", payloadHash: policy), by: mallory, at: t + 3, "not registered")
        #expect(throws: LedgerError.self) { try h.submit(.audit(event: "rental.set", dataset: nil, payloadHash: policy), mallory, at: t + 3) }
        #expect(throws: LedgerError.self) { try h.submit(.audit(event: "Bad Kind", dataset: nil, payloadHash: policy), mallory, at: t + 3) }
        #expect(throws: LedgerError.self) { try h.submit(.registerVersion(dataset: "aging", root: root(0)), owner, at: t + 3) }
        // Allowed writers record audit events; queries find them by dataset, actor and kind.
        try h.submit(.audit(event: "key.release", dataset: "aging", payloadHash: policy), mallory, at: t + 4)
        try h.submit(.audit(event: "job.run", dataset: nil, payloadHash: policy), mallory, at: t + 5)
        #expect(h.engine.events(matching: EventFilter(dataset: "aging")).count == 4)
        #expect(h.engine.events(matching: EventFilter(actor: mallory.address)).map(\.kind) == ["key.release", "job.run"])
        #expect(h.engine.events(matching: EventFilter(kind: "rental.set")).count == 1)
        #expect(h.engine.events(matching: EventFilter(since: t + 5)).map(\.kind) == ["job.run"])
        #expect(h.engine.events(matching: EventFilter()).count == 5, "refused operations left nothing behind")
    }

    /// A key release (`key.release`, `key.release.simulated`) of a (dataset, payload hash) is
    /// recorded once, whoever writes it: two plane replicas cannot both answer one session
    /// (docs/key-release.md §Single use). Other kinds, other payloads and other datasets repeat.
    @Test(arguments: EngineKind.allCases) func keyReleasesAreSingleUse(_ kind: EngineKind) throws {
        let h = try Harness(kind)
        let owner = try key(1), planeA = try key(5), planeB = try key(6)
        let t = try h.start()
        try h.submit(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), owner, at: t)
        try h.submit(.registerDataset(dataset: "other", policyHash: policy, owner: owner.address), owner, at: t + 1)
        try h.submit(.audit(event: "key.release", dataset: "aging", payloadHash: root(9)), planeA, at: t + 2)
        h.refused(.audit(event: "key.release", dataset: "aging", payloadHash: root(9)), by: planeB, at: t + 3, "single use")
        h.refused(.audit(event: "key.release.simulated", dataset: "aging", payloadHash: root(9)), by: planeA, at: t + 3, "single use")
        try h.submit(.audit(event: "key.release.simulated", dataset: "aging", payloadHash: root(8)), planeB, at: t + 3)
        h.refused(.audit(event: "key.release.simulated", dataset: "aging", payloadHash: root(8)), by: planeA, at: t + 4, "single use")
        try h.submit(.audit(event: "key.release", dataset: "other", payloadHash: root(9)), planeA, at: t + 4)
        try h.submit(.audit(event: "job.run", dataset: "aging", payloadHash: root(9)), planeA, at: t + 5)
        try h.submit(.audit(event: "job.run", dataset: "aging", payloadHash: root(9)), planeA, at: t + 6)
        #expect(h.engine.events(matching: EventFilter(actor: planeA.address)).map(\.kind) == ["key.release", "key.release", "job.run", "job.run"])
        #expect(h.engine.events(matching: EventFilter()).count == 7, "refused releases left nothing behind")
    }

    /// Operator approvals (ERC-721 setApprovalForAll by EIP-712 signature): the operator acts
    /// for the owner until the approval expires or is revoked; replays, forgeries, other
    /// ledgers' approvals and strangers are refused.
    @Test(arguments: EngineKind.allCases) func operatorApprovals(_ kind: EngineKind) throws {
        let h = try Harness(kind)
        let owner = try key(1), user = try key(2), plane = try key(3), mallory = try key(4)
        let domain = h.engine.approvalDomain
        if let chain = h.engine as? EVMLedger {
            #expect(domain.chainId == Chain.devnet.chainID && domain.verifyingContract == chain.location.rental && domain.salt == [UInt8](repeating: 0, count: 32))
        }
        let t = try h.start()
        let register = Ledger.Operation.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address)
        h.refused(register, by: plane, at: t, "not the owner nor an operator")
        let a1 = try OperatorApproval(signing: owner, operator: plane.address, expires: t + 100, nonce: 1, domain: domain)
        let elsewhere = try EIP712Domain(name: "cce4long", version: "1", chainId: domain.chainId, verifyingContract: try key(9).address, salt: domain.salt)
        h.refused(.approveOperator(try OperatorApproval(signing: owner, operator: plane.address, expires: t + 100, nonce: 1, domain: elsewhere)), by: plane, at: t, "signed by")
        h.refused(.approveOperator(OperatorApproval(owner: owner.address, operator: mallory.address, expires: t + 100, nonce: 1, signature: a1.signature)), by: mallory, at: t, "signed by")
        try h.submit(.approveOperator(a1), plane, at: t) // anyone may submit it
        #expect(h.engine.isOperator(plane.address, of: owner.address, at: t + 99))
        #expect(!h.engine.isOperator(plane.address, of: owner.address, at: t + 100))
        #expect(!h.engine.isOperator(mallory.address, of: owner.address, at: t + 1))
        #expect(h.engine.approvalNonce(of: owner.address) == 1)
        h.refused(.approveOperator(a1), by: plane, at: t + 1, "replay")
        try h.submit(register, plane, at: t + 1)
        #expect(h.engine.dataset("aging")?.owner == owner.address)
        try h.submit(.registerVersion(dataset: "aging", root: root(2)), plane, at: t + 2)
        try h.submit(.setRental(dataset: "aging", rentalID: 0, user: user.address, expires: t + 1000), plane, at: t + 3)
        h.refused(.setRental(dataset: "aging", rentalID: 0, user: mallory.address, expires: t + 1000), by: mallory, at: t + 4, "or an operator it approved")
        // Expired: the operator may no longer act; the owner still may, and approves again.
        h.refused(.endRental(dataset: "aging", rentalID: 1), by: plane, at: t + 100, "or an operator it approved")
        let a2 = try OperatorApproval(signing: owner, operator: plane.address, expires: t + 500, nonce: 2, domain: domain)
        try h.submit(.approveOperator(a2), owner, at: t + 110)
        try h.submit(.registerVersion(dataset: "aging", root: root(3)), plane, at: t + 120)
        // Revoked (expires 0).
        let revoke = try OperatorApproval(signing: owner, operator: plane.address, expires: 0, nonce: 3, domain: domain)
        try h.submit(.approveOperator(revoke), plane, at: t + 130)
        h.refused(.registerVersion(dataset: "aging", root: root(4)), by: plane, at: t + 140, "or an operator it approved")
        let stale = try OperatorApproval(signing: owner, operator: plane.address, expires: t + 50, nonce: 4, domain: domain)
        h.refused(.approveOperator(stale), by: plane, at: t + 150, "expired")
        try h.submit(.endRental(dataset: "aging", rentalID: 1), owner, at: t + 160)
        #expect(h.engine.events(matching: EventFilter(kind: "operator.approve")).map(\.operation) == [.approveOperator(a1), .approveOperator(a2), .approveOperator(revoke)])
        #expect(h.engine.approvalNonce(of: owner.address) == 3)
    }

    /// The same operations on both engines give the same events (audit events read back from
    /// the chain with eth_getLogs match the embedded log's).
    @Test func bothEnginesRecordTheSameEvents() throws {
        let a = try Harness(.embedded), b = try Harness(.evm)
        let owner = try key(1), alice = try key(2), plane = try key(5)
        let ta = try a.start(), tb = try b.start()
        let ops: [(Ledger.Operation, PrivateKey)] = [
            (.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), owner),
            (.registerVersion(dataset: "aging", root: root(3)), owner),
            (.setRental(dataset: "aging", rentalID: 0, user: alice.address, expires: 4_000_000_000), owner),
            (.audit(event: "key.release", dataset: "aging", payloadHash: root(9)), plane),
            (.audit(event: "job.run", dataset: nil, payloadHash: root(8)), plane),
            (.endRental(dataset: "aging", rentalID: 1), owner),
        ]
        for (i, (op, k)) in ops.enumerated() {
            try a.submit(op, k, at: ta + UInt64(i))
            try b.submit(op, k, at: tb + UInt64(i))
        }
        let ea = a.engine.events(matching: EventFilter()), eb = b.engine.events(matching: EventFilter())
        #expect(ea.map(\.operation) == eb.map(\.operation))
        #expect(ea.map(\.actor) == eb.map(\.actor) && ea.map(\.kind) == eb.map(\.kind) && ea.map(\.index) == eb.map(\.index))
        #expect(eb.map(\.time) == (0..<UInt64(ops.count)).map { tb + $0 })
    }
}
}
