// The chain engine's own tests: transactions byte for byte against eth-account, RLP and ABI
// vectors and fuzzing, the location grammar, chain-id mismatch, a transfer ending a rental,
// misbehaving RPC endpoints (lying, reverting, hanging), the contracts' build and their
// Python test suite, and the gas each operation costs.
import EVM
import Envelope
import Foundation
import TestSupport
import Testing
import Wallet
@testable import Ledger

@Suite struct EVMPrimitives {
    @Test func rlpVectors() {
        // From the Ethereum wiki's RLP page.
        #expect(RLP.bytes(Array("dog".utf8)).encoded == [0x83, 0x64, 0x6f, 0x67])
        #expect(RLP.list([.bytes(Array("cat".utf8)), .bytes(Array("dog".utf8))]).encoded == Hex.decode("c88363617483646f67")!)
        #expect(RLP.bytes([]).encoded == [0x80] && RLP.list([]).encoded == [0xc0] && RLP.uint(0).encoded == [0x80])
        #expect(RLP.uint(15).encoded == [0x0f] && RLP.uint(1024).encoded == [0x82, 0x04, 0x00])
        let lorem = Array("Lorem ipsum dolor sit amet, consectetur adipisicing elit".utf8)
        #expect(RLP.bytes(lorem).encoded == [0xb8, 0x38] + lorem)
        #expect(RLP.list([.list([]), .list([.list([])]), .list([.list([]), .list([.list([])])])]).encoded == Hex.decode("c7c0c1c0c3c0c1c0")!)
    }

    /// 60 random EIP-1559 transactions signed here equal eth-account's, byte for byte.
    @Test func transactionsMatchEthAccount() throws {
        var g = SeededGenerator(seed: 1559)
        var items: [[String: Any]] = []
        var mine: [String] = []
        for i in 0..<60 {
            var k = g.bytes(32); k[0] = 0x11 // in range
            let key = try PrivateKey(bytes: k)
            let to: Address? = i % 7 == 0 ? nil : Address(bytes: g.bytes(20))
            let value = i % 3 == 0 ? [] : Array(g.bytes(Int(g.next() % 12)).drop(while: { $0 == 0 }))
            let tx = EIP1559Transaction(chainID: [1, 1337, 11_155_111, UInt64.max >> 1][i % 4], nonce: i % 5 == 0 ? 0 : g.next() >> UInt64(i % 64),
                                        maxPriorityFeePerGas: g.next() >> 20, maxFeePerGas: g.next() >> 10, gas: 21_000 + g.next() % 5_000_000,
                                        to: to, value: value, data: g.bytes(Int(g.next() % 300)))
            mine.append(Hex.encode(try tx.signed(by: key).raw))
            var fields: [String: Any] = ["chainId": tx.chainID, "nonce": tx.nonce, "maxPriorityFeePerGas": tx.maxPriorityFeePerGas,
                                         "maxFeePerGas": tx.maxFeePerGas, "gas": tx.gas, "value": value.reduce(0.0) { $0 * 256 + Double($1) },
                                         "data": Hex.encode(tx.data), "to": to?.checksummed ?? NSNull()]
            // JSON numbers are doubles: pass big values as decimal strings Python turns into ints.
            fields["value"] = Self.decimal(value)
            items.append(["key": Hex.encode(k), "tx": fields])
        }
        let input = try JSONSerialization.data(withJSONObject: ["items": items])
        let script = "import json,sys,subprocess\nreq=json.load(sys.stdin)\nfor it in req['items']:\n  it['tx']['value']=int(it['tx']['value'])\nsys.stdout.write(subprocess.run([sys.executable,sys.argv[1],'sign-tx'],input=json.dumps(req).encode(),capture_output=True,check=True).stdout.decode())"
        let r = try run(Repo.python, ["-c", script, Repo.root + "/Tests/interop/eth_tool.py"], input: input)
        #expect(r.status == 0, "\(r.stderr)")
        let theirs = try JSONSerialization.jsonObject(with: r.stdout) as! [String]
        #expect(theirs == mine)
    }

    static func decimal(_ be: [UInt8]) -> String {
        var digits = [UInt8](), n = be
        while n.contains(where: { $0 != 0 }) {
            var rem = 0
            n = n.map { b in let cur = rem * 256 + Int(b); rem = cur % 10; return UInt8(cur / 10) }
            digits.append(UInt8(rem))
        }
        return digits.isEmpty ? "0" : String(digits.reversed().map { Character(String($0)) })
    }

    @Test func abiRoundTripAndStrictDecoding() throws {
        let data = ABI.encode([.uint(7), .address(try key(2).address), .string("aging"), .bool(true), .bytes32(root(9))])
        let r = ABIReader(data)
        #expect(try r.uint64(0) == 7 && r.address(1) == key(2).address && r.string(2) == "aging" && r.bool(3) && r.bytes32(4) == root(9))
        #expect(ABI.selector("setUser(uint256,address,uint64)") == [0xe0, 0x30, 0x56, 0x5e])
        #expect(ABI.revertReason(Hex.decode("08c379a0" + String(repeating: "0", count: 62) + "20" + String(repeating: "0", count: 63) + "2" + "6869" + String(repeating: "0", count: 60))!) == "hi")
        // Dirty high bytes, offsets past the end, huge lengths: refused.
        var dirty = data; dirty[40] = 1
        #expect(throws: ABIError.self) { try ABIReader(dirty).address(1) }
        #expect(throws: ABIError.self) { try ABIReader(Array(data.prefix(100))).string(2) }
        // An array of (id, user, expires) tuples, then random damage: never a crash.
        let array = ABIWord.uint(32) + ABIWord.uint(2) + ABIWord.uint(1) + ABI.encode([.address(try key(3).address)]) + ABIWord.uint(99)
            + ABIWord.uint(2) + ABI.encode([.address(try key(4).address)]) + ABIWord.uint(100)
        let rows = try ABIReader(array).array(0, width: 3)
        #expect(try rows.map { try $0.uint64(0) } == [1, 2] && rows[1].address(1) == key(4).address)
        var g = SeededGenerator(seed: 4907)
        for _ in 0..<5000 {
            var b = array
            for _ in 0..<(1 + Int(g.next() % 4)) { b[Int(g.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: g.next()) }
            if Bool.random(using: &g) { b = Array(b.prefix(Int(g.next() % UInt64(b.count)))) }
            if let rows = try? ABIReader(b).array(0, width: 3) { for row in rows { _ = try? (row.uint64(0), row.address(1), row.uint64(2)) } }
            _ = try? ABIReader(b).string(0)
        }
    }

    @Test func locationGrammar() throws {
        let rental = try key(1).address, audit = try key(2).address
        let text = "evm+http://127.0.0.1:8545?chain=1337&rental=\(rental.checksummed)&audit=\(audit.checksummed)"
        let l = try EVMLocation.parse(text)
        #expect(l.endpoints == ["http://127.0.0.1:8545"] && l.chainID == 1337 && l.rental == rental && l.audit == audit && l.block == "finalized" && l.quorum == 1)
        #expect(l.text == text)
        let full = text + "&block=latest&rpc=https%3A%2F%2Fnode.example%2Fv3%2Fkey&rpc=http://10.0.0.2:8545&quorum=2&timeout=5&from=12&registry=\(rental.checksummed)"
        let f = try EVMLocation.parse(full)
        #expect(f.endpoints == ["http://127.0.0.1:8545", "https://node.example/v3/key", "http://10.0.0.2:8545"] && f.quorum == 2 && f.timeout == 5 && f.fromBlock == 12 && f.block == "latest")
        #expect(try EVMLocation.parse(f.text) == f)
        for bad in ["evm+http://127.0.0.1:8545?rental=\(rental.checksummed)&audit=\(audit.checksummed)",
                    text + "&chain=1", text + "&colour=blue", text + "&block=pending", text + "&quorum=2", text + "&rpc=ftp://x",
                    text.replacingOccurrences(of: rental.checksummed, with: "0x1234"), "evm+http://?chain=1", text + "&registry=\(audit.checksummed)",
                    "evm://127.0.0.1:8545?chain=1"] {
            #expect(throws: LedgerError.self, "\(bad)") { try EVMLocation.parse(bad) }
        }
        // No message carries an RPC URL's path or query (they hold API keys).
        do { _ = try EVMLocation.parse(full + "&quorum=9"); Issue.record("accepted") } catch { #expect(!"\(error)".contains("v3/key")) }
        var g = SeededGenerator(seed: 8545)
        let bytes = Array(full.utf8)
        for _ in 0..<3000 {
            var b = bytes
            for _ in 0..<(1 + Int(g.next() % 4)) { b[Int(g.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: 32 + g.next() % 95) }
            _ = try? EVMLocation.parse(String(decoding: b, as: UTF8.self))
        }
    }
}

extension OnChain {
@Suite struct EVMChain {
    @Test func chainMismatchAndMissingContractsAreRefused() throws {
        let l = try Chain.deploy(block: "latest")
        var loc = l.location
        loc.chainID = 1
        #expect { try EVMLedger(location: loc) } throws: { "\($0)".contains("chain id mismatch") }
        loc = l.location
        loc.audit = try key(7).address
        #expect { try EVMLedger(location: loc) } throws: { "\($0)".contains("no contract at audit=") }
        // Through Ledgers.open, by location text.
        let opened = try Ledgers.open(l.location.text)
        #expect(opened.origin == "evm:\(Chain.devnet.chainID)/\(l.location.rental.checksummed)")
        #expect(throws: LedgerError.self) { try Ledgers.open("evm+http://127.0.0.1:1?chain=1337&rental=\(l.location.rental.checksummed)&audit=\(l.location.audit.checksummed)&timeout=2") }
    }

    /// Transferring a rental's token ends the rental (ERC-4907 reference behaviour); the engine
    /// reads it back as a rental.end by whoever transferred it.
    @Test func transferEndsTheRental() throws {
        let l = try Chain.deploy()
        let owner = try key(1), alice = try key(2), bob = try key(3)
        try l.submit(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner)
        try l.submit(.setRental(dataset: "aging", rentalID: 0, user: alice.address, expires: try Chain.latestTime() + 3600), signer: owner)
        let now = try Chain.latestTime()
        #expect(l.activeRental(dataset: "aging", user: alice.address, at: now)?.id == 1)
        try l.transact(owner, to: l.location.rental, data: ABI.call("transferFrom(address,address,uint256)", [.address(owner.address), .address(bob.address), .uint(1)]))
        #expect(l.activeRental(dataset: "aging", user: alice.address, at: now) == nil)
        let last = try #require(l.events(matching: EventFilter(dataset: "aging")).last)
        #expect(last.operation == .endRental(dataset: "aging", rentalID: 1) && last.actor == owner.address)
        // The owner of the dataset still rules the rental (re-rents it), not the token's new holder.
        #expect(throws: LedgerError.self) { try l.submit(.setRental(dataset: "aging", rentalID: 1, user: bob.address, expires: now + 7200), signer: bob) }
        try l.submit(.setRental(dataset: "aging", rentalID: 1, user: bob.address, expires: now + 7200), signer: owner)
        #expect(l.activeRental(dataset: "aging", user: bob.address, at: now)?.id == 1)
    }

    /// Reads at the `finalized` tag compare userExpires with that block's timestamp, not the
    /// caller's clock: a rental that expired on the chain is inactive even for an earlier `at`.
    @Test func expiryIsTheBlocksTime() throws {
        let l = try Chain.deploy()
        let owner = try key(1), alice = try key(2)
        try l.submit(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner)
        let t = try Chain.latestTime() + 100
        try l.submit(.setRental(dataset: "aging", rentalID: 0, user: alice.address, expires: t), signer: owner)
        try Chain.rpc("evm_mine", [t - 1])
        #expect(l.activeRental(dataset: "aging", user: alice.address, at: t - 50)?.id == 1)
        #expect(l.activeRental(dataset: "aging", user: alice.address, at: t) == nil, "expired at the asked time")
        try Chain.rpc("evm_mine", [t])
        #expect(l.activeRental(dataset: "aging", user: alice.address, at: t - 50) == nil, "expired at the block's time")
    }

    /// A second endpoint that lies, reverts or hangs is reported and never trusted.
    @Test(arguments: ["flip", "revert", "hang"]) func misbehavingEndpoint(_ mode: String) throws {
        let l = try Chain.deploy()
        let owner = try key(1), alice = try key(2)
        try l.submit(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner)
        try l.submit(.setRental(dataset: "aging", rentalID: 0, user: alice.address, expires: try Chain.latestTime() + 3600), signer: owner)
        let now = try Chain.latestTime()
        #expect(l.activeRental(dataset: "aging", user: alice.address, at: now)?.id == 1)
        let proxy = try RPCProxy(mode: mode, upstream: Chain.devnet.url)
        defer { proxy.stop() }
        var loc = l.location
        loc.endpoints.append(proxy.url)
        loc.quorum = 2
        loc.timeout = 2
        let both = try EVMLedger(location: loc)
        #expect(both.activeRental(dataset: "aging", user: alice.address, at: now) == nil, "not trusted")
        let why = "\(both.lastError.map { "\($0)" } ?? "")"
        #expect(why.contains(mode == "hang" ? "only 1 of 2 RPC endpoints answered" : "disagree"), "\(why)")
        #expect(both.dataset("aging") == nil)
        #expect(throws: LedgerError.self) { try both.submit(.registerVersion(dataset: "aging", root: root(4)), signer: owner) }
        if mode == "hang" {
            // With a quorum of 1 the honest endpoint's answer stands; the hanging one is logged.
            loc.quorum = 1
            #expect(try EVMLedger(location: loc).activeRental(dataset: "aging", user: alice.address, at: now)?.id == 1)
        }
    }

    /// A transaction signed here is the one eth-account signs for the same key, nonce and
    /// fields, and the node accepts and mines it.
    @Test func swiftSignedTransactionIsEthAccountsAndIsMined() throws {
        let l = try Chain.deploy()
        let owner = try key(1)
        let nonce = Quantity.uint64(try Chain.rpc("eth_getTransactionCount", [owner.address.checksummed, "pending"]))!
        let data = ABI.call("register(string,bytes32,address)", [.string("signed-here"), .bytes32(policy), .address(owner.address)])
        let tx = EIP1559Transaction(chainID: Chain.devnet.chainID, nonce: nonce, maxPriorityFeePerGas: 1_000_000_000, maxFeePerGas: 100_000_000_000,
                                    gas: 300_000, to: l.location.rental, data: data)
        let signed = try tx.signed(by: owner)
        let item: [String: Any] = ["key": Hex.encode([UInt8](repeating: 1, count: 32)),
                                   "tx": ["chainId": tx.chainID, "nonce": tx.nonce, "maxPriorityFeePerGas": tx.maxPriorityFeePerGas, "maxFeePerGas": tx.maxFeePerGas,
                                          "gas": tx.gas, "to": l.location.rental.checksummed, "value": 0, "data": Hex.encode(data)] as [String: Any]]
        let r = try run(Repo.python, [Repo.root + "/Tests/interop/eth_tool.py", "sign-tx"], input: try JSONSerialization.data(withJSONObject: ["items": [item]]))
        #expect(r.status == 0, "\(r.stderr)")
        #expect((try JSONSerialization.jsonObject(with: r.stdout) as? [String]) == [Hex.encode(signed.raw)])
        let hash = try Chain.rpc("eth_sendRawTransaction", [Quantity.data(signed.raw)])
        #expect(Quantity.bytes(hash) == signed.hash)
        let receipt = try #require(EVMLedger.parseReceipt(try Chain.rpc("eth_getTransactionReceipt", [Quantity.data(signed.hash)])) ?? nil)
        #expect(receipt.status == 1)
        #expect(l.dataset("signed-here")?.owner == owner.address)
    }

    /// An endpoint that never shows the receipt: the write waits for the quorum until its
    /// timeout, then says the transaction may still be mined (never that it failed or succeeded).
    @Test func receiptTimeout() throws {
        let l = try Chain.deploy()
        let owner = try key(1)
        let proxy = try RPCProxy(mode: "noreceipt", upstream: Chain.devnet.url)
        defer { proxy.stop() }
        var loc = l.location
        loc.endpoints.append(proxy.url)
        loc.timeout = 1.5
        let both = try EVMLedger(location: loc)
        let started = Date()
        #expect { try both.submit(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner) } throws: {
            "\($0)".contains("no receipt for transaction") && "\($0)".contains("may still be mined")
        }
        #expect(Date().timeIntervalSince(started) < 10)
        // It was mined all the same: the honest endpoint alone shows it.
        #expect(l.dataset("aging")?.owner == owner.address)
    }

    /// Another writer with the same key has a transaction with our nonce pending (geth answers
    /// "replacement transaction underpriced"): the engine asks for the nonce again and resends.
    @Test func nonceTakenByAPendingTransactionIsRetried() throws {
        let l = try Chain.deploy()
        let owner = try key(1)
        let proxy = try RPCProxy(mode: "underpriced", upstream: Chain.devnet.url)
        defer { proxy.stop() }
        var loc = l.location
        loc.endpoints = [proxy.url]
        loc.quorum = 1
        let viaProxy = try EVMLedger(location: loc)
        try viaProxy.submit(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner)
        #expect(l.dataset("aging")?.owner == owner.address)
    }

    /// Hostile JSON for blocks, receipts and logs: parsed strictly, never a crash.
    @Test func hostileJSONNeverCrashes() throws {
        let log: [String: Any] = ["address": "0x" + String(repeating: "ab", count: 20), "topics": ["0x" + String(repeating: "01", count: 32)],
                                  "data": "0x" + String(repeating: "00", count: 64), "blockNumber": "0x10", "logIndex": "0x0",
                                  "transactionHash": "0x" + String(repeating: "02", count: 32), "removed": false]
        #expect(EVMLedger.parseLogs([log])?.count == 1)
        let text = Array(try JSONSerialization.data(withJSONObject: [log]))
        var g = SeededGenerator(seed: 3)
        for _ in 0..<3000 {
            var b = text
            for _ in 0..<(1 + Int(g.next() % 3)) { b[Int(g.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: 32 + g.next() % 95) }
            guard let any = try? JSONSerialization.jsonObject(with: Data(b), options: [.fragmentsAllowed]) else { continue }
            _ = EVMLedger.parseLogs(any)
            _ = EVMLedger.parseBlock(any)
            _ = EVMLedger.parseReceipt(any)
            _ = (any as? [Any])?.first.map { (Quantity.uint64($0), Quantity.bytes($0)) }
        }
        for bad in ["0x", "0x00", "0x1g", "12", "0x10000000000000000"] { #expect(Quantity.uint64(bad) == nil, "\(bad)") }
        #expect(Quantity.uint64("0x0") == 0 && Quantity.uint64("0xffffffffffffffff") == UInt64.max)
    }

    /// An embedded ledger's checkpoint witnessed on the chain (Audit.checkpoint): read back,
    /// and never rolled back to a smaller tree.
    @Test func embeddedCheckpointsOnTheChain() throws {
        let l = try Chain.deploy()
        let dir = TempDir()
        let file = try EmbeddedLedger.create(path: dir.sub("l"))
        let owner = try key(1)
        try file.append(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner)
        try file.append(.registerVersion(dataset: "aging", root: root(1)), signer: owner)
        let cp = file.checkpoint()
        #expect(try l.publishedCheckpoint(origin: file.origin) == nil)
        try l.publishCheckpoint(cp, signer: owner)
        let got = try #require(try l.publishedCheckpoint(origin: file.origin))
        #expect(got.size == 2 && got.root == cp.root)
        let older = Checkpoint(origin: cp.origin, size: 1, root: file.tree.root(size: 1))
        #expect { try l.publishCheckpoint(older, signer: owner) } throws: { "\($0)".contains("cannot shrink") }
        // Writers only.
        let stranger = try PrivateKey(bytes: Hex.decode(String(Chain.devnet.keys[1].dropFirst(2)))!) // funded, not a writer
        #expect { try l.publishCheckpoint(cp, signer: stranger) } throws: { "\($0)".contains("not an allow-listed audit writer") }
    }

    /// Gas used by each operation (docs/ledger.md §7.4), measured from receipts.
    @Test func gasCosts() throws {
        let l = try Chain.deploy()
        let owner = try key(1), alice = try key(2), plane = try key(5)
        var gas: [(String, UInt64)] = []
        func measure(_ name: String, _ op: Ledger.Operation, _ k: PrivateKey) throws {
            try l.submit(op, signer: k)
            gas.append((name, l.lastGasUsed))
        }
        try measure("dataset.register", .registerDataset(dataset: "aging-cohort-2026", policyHash: policy, owner: owner.address), owner)
        try measure("dataset.version", .registerVersion(dataset: "aging-cohort-2026", root: root(1)), owner)
        try measure("rental.set (new)", .setRental(dataset: "aging-cohort-2026", rentalID: 0, user: alice.address, expires: 4_000_000_000), owner)
        try measure("rental.set (existing)", .setRental(dataset: "aging-cohort-2026", rentalID: 1, user: alice.address, expires: 4_000_100_000), owner)
        try measure("rental.end", .endRental(dataset: "aging-cohort-2026", rentalID: 1), owner)
        try measure("operator.approve", .approveOperator(try OperatorApproval(signing: owner, operator: plane.address, expires: 4_000_000_000, nonce: 1, domain: l.approvalDomain)), plane)
        try measure("audit (first: key.release)", .audit(event: "key.release", dataset: "aging-cohort-2026", payloadHash: root(2)), plane)
        try measure("audit (key.release)", .audit(event: "key.release", dataset: "aging-cohort-2026", payloadHash: root(3)), plane)
        try measure("audit (other kinds)", .audit(event: "job.run", dataset: "aging-cohort-2026", payloadHash: root(2)), plane)
        let rentalsDeploy = try l.transact(Chain.deployer, to: nil, data: Hex.decode(String(EVMContracts.rentals.dropFirst(2)))!)
        gas.append(("deploy Rentals", rentalsDeploy.gasUsed))
        let auditDeploy = try l.transact(Chain.deployer, to: nil, data: Hex.decode(String(EVMContracts.audit.dropFirst(2)))! + ABI.encode([.address(rentalsDeploy.contractAddress!)]))
        gas.append(("deploy Audit", auditDeploy.gasUsed))
        print("gas used: " + gas.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
        for (name, g) in gas { #expect(g > 21_000 && g < (name.hasPrefix("deploy") ? 5_000_000 : 300_000), "\(name): \(g)") }
    }

    /// `cce4 ledger deploy`, then the other ledger commands with --ledger evm+http://….
    @Test func cliOnTheChain() throws {
        let dir = TempDir()
        let who = try ProcessTests.wallets(dir, ["owner", "user"])
        for w in ["owner", "user"] { try Chain.rpc("eth_sendTransaction", [["from": Chain.deployer.address.checksummed, "to": who[w]!, "value": "0xde0b6b3a7640000"]]) }
        let loc = try ProcessTests.cli(["ledger", "deploy", "--rpc", Chain.devnet.url, "--keystore", dir.sub("owner.json"), "--block", "latest"])
            .stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(loc.hasPrefix("evm+http://127.0.0.1:") && loc.contains("&block=latest") && loc.contains("&from="), "\(loc)")
        try ProcessTests.cli(["ledger", "dataset", "register", "--ledger", loc, "--keystore", dir.sub("owner.json"), "--dataset", "aging",
                              "--policy-hash", Hex.encode(policy), "--root", Hex.encode(root(1))])
        var r = try ProcessTests.cli(["ledger", "rent", "--ledger", loc, "--keystore", dir.sub("owner.json"), "--dataset", "aging", "--user", who["user"]!, "--for", "1d"])
        #expect(r.stdoutText.hasPrefix("rental 1: "))
        r = try ProcessTests.cli(["ledger", "status", "--ledger", loc, "--dataset", "aging", "--user", who["user"]!])
        #expect(r.stdoutText.hasPrefix("active: rental 1"))
        r = try ProcessTests.cli(["ledger", "status", "--ledger", loc, "--dataset", "aging", "--user", who["owner"]!], ok: false)
        #expect(r.status == 1)
        r = try ProcessTests.cli(["ledger", "rent", "--ledger", loc, "--keystore", dir.sub("user.json"), "--dataset", "aging", "--user", who["user"]!, "--for", "1d"], ok: false)
        #expect(r.status != 0 && r.stderr.contains("only the owner"), "\(r.stderr)")
        r = try ProcessTests.cli(["ledger", "events", "--ledger", loc, "--dataset", "aging"])
        #expect(r.stdoutText.split(separator: "\n").map { $0.split(separator: "\t")[2] } == ["dataset.register", "dataset.version", "rental.set"])
        r = try ProcessTests.cli(["ledger", "verify", "--ledger", loc], ok: false)
        #expect(r.status == 64 && r.stderr.contains("works on ledger files") && !r.stderr.contains("rental="), "\(r.stderr)")
        r = try ProcessTests.cli(["ledger", "init", "--ledger", loc], ok: false)
        #expect(r.status == 64 && r.stderr.contains("cce4 ledger deploy"))
        r = try ProcessTests.cli(["ledger", "status", "--ledger", loc.replacingOccurrences(of: "chain=\(Chain.devnet.chainID)", with: "chain=5")], ok: false)
        #expect(r.status != 0 && r.stderr.contains("chain id mismatch"), "\(r.stderr)")
    }

    @Test func contractsBuildMatchesSourcesAndPassTheirTests() throws {
        let check = try run(Repo.python, [Repo.root + "/scripts/compile_contracts.py", "--check"])
        #expect(check.status == 0, "\(check.stderr)")
        let suite = try run(Repo.python, [Repo.root + "/Tests/interop/contract_tests.py"])
        #expect(suite.status == 0, "\(suite.stderr)")
    }
}

}

/// Tests/interop/rpc_proxy.py: a misbehaving endpoint in front of the devnet.
final class RPCProxy {
    let url: String
    private let script: LoopbackScript

    init(mode: String, upstream: String) throws {
        script = try LoopbackScript("Tests/interop/rpc_proxy.py", [mode, upstream])
        url = script.firstLine
        guard url.hasPrefix("http://") else { throw TestFailure("rpc_proxy.py did not start") }
    }

    func stop() { script.stop() }
}
