// Ledger: the RFC 6962 tree and proofs, the ERC-4907 rental rules, and the embedded
// engine's file: tampering, torn appends, SIGKILL, and 4 concurrent writer processes.
import Envelope
import Foundation
import TestSupport
import Testing
import Wallet
@testable import Ledger

/// MTH straight from RFC 6962 §2.1, recursively: the reference the tree is checked against.
func referenceRoot(_ leaves: ArraySlice<[UInt8]>) -> [UInt8] {
    if leaves.isEmpty { return Merkle.emptyRoot }
    if leaves.count == 1 { return Merkle.leafHash(leaves.first!) }
    var k = 1
    while k * 2 < leaves.count { k *= 2 }
    return Merkle.nodeHash(referenceRoot(leaves.prefix(k)), referenceRoot(leaves.dropFirst(k)))
}

@Suite struct MerkleTests {
    /// The RFC 6962 test leaves used by certificate-transparency implementations.
    static let leaves: [[UInt8]] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
        .map { Hex.decode($0)! }

    @Test func publishedRoots() {
        let roots = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                     "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                     "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
                     "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                     "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
                     "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
                     "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
                     "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
        let tree = MerkleTree(leafHashes: Self.leaves.map(Merkle.leafHash))
        for n in 1...8 { #expect(Hex.encode(tree.root(size: UInt64(n))) == roots[n - 1], "size \(n)") }
        #expect(Hex.encode(tree.root(size: 0)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    /// Every inclusion proof in every tree up to 70 leaves, and every consistency proof
    /// between its prefixes, verify; a changed hash, index or size does not.
    @Test func allProofsUpTo70Leaves() throws {
        var g = SeededGenerator(seed: 6962)
        let leaves = (0..<70).map { _ in g.bytes(Int(g.next() % 40)) }
        let tree = MerkleTree(leafHashes: leaves.map(Merkle.leafHash))
        for n in UInt64(1)...70 {
            let root = tree.root(size: n)
            #expect(root == referenceRoot(leaves.prefix(Int(n))[...]))
            for i in 0..<n {
                let p = try tree.inclusionProof(index: i, size: n)
                try Merkle.verifyInclusion(leafHash: tree.leafHash(i), index: i, size: n, path: p, root: root)
                if n > 1 {
                    #expect(throws: LedgerError.self) { try Merkle.verifyInclusion(leafHash: tree.leafHash(i), index: (i + 1) % n, size: n, path: p, root: root) }
                }
                if !p.isEmpty {
                    var bad = p; bad[Int(i) % p.count][0] ^= 1
                    #expect(throws: LedgerError.self) { try Merkle.verifyInclusion(leafHash: tree.leafHash(i), index: i, size: n, path: bad, root: root) }
                }
            }
            for m in 0...n {
                let p = try tree.consistencyProof(oldSize: m, newSize: n)
                try Merkle.verifyConsistency(oldSize: m, oldRoot: tree.root(size: m), newSize: n, newRoot: root, path: p)
                if m > 0 && m < n {
                    var other = leaves; other[Int(m) - 1] = [0xde, 0xad]
                    let forged = referenceRoot(other.prefix(Int(m))[...])
                    #expect(throws: LedgerError.self) { try Merkle.verifyConsistency(oldSize: m, oldRoot: forged, newSize: n, newRoot: root, path: p) }
                    if !p.isEmpty {
                        var bad = p; bad[p.count - 1][5] ^= 0x80
                        #expect(throws: LedgerError.self) { try Merkle.verifyConsistency(oldSize: m, oldRoot: tree.root(size: m), newSize: n, newRoot: root, path: bad) }
                    }
                }
            }
        }
        #expect(throws: LedgerError.self) { try Merkle.verifyConsistency(oldSize: 5, oldRoot: tree.root(size: 5), newSize: 4, newRoot: tree.root(size: 4), path: []) }
    }
}

func key(_ seed: UInt8) throws -> PrivateKey { try PrivateKey(bytes: [UInt8](repeating: seed, count: 32)) }
let policy = [UInt8](repeating: 7, count: 32)
func root(_ n: UInt8) -> [UInt8] { [UInt8](repeating: n, count: 32) }

@Suite struct RulesTests {
    /// ERC-4907 at the boundaries: active until `expires` (exclusive), ended early, re-rented.
    @Test func rentalsFollowERC4907() throws {
        let dir = TempDir()
        let l = try EmbeddedLedger.create(path: dir.sub("l"))
        let owner = try key(1), alice = try key(2), bob = try key(3)
        let t0 = UInt64(Date().timeIntervalSince1970) - 1_000_000
        try l.append(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner, time: t0)
        try l.append(.registerVersion(dataset: "aging", root: root(1)), signer: owner, time: t0)
        try l.append(.setRental(dataset: "aging", rentalID: 1, user: alice.address, expires: t0 + 100), signer: owner, time: t0 + 10)
        let s = { l.state }
        #expect(s().activeRental(dataset: "aging", user: alice.address, at: t0 + 9) == nil, "not before it was granted")
        #expect(s().activeRental(dataset: "aging", user: alice.address, at: t0 + 10)?.id == 1)
        #expect(s().activeRental(dataset: "aging", user: alice.address, at: t0 + 99)?.id == 1)
        #expect(s().activeRental(dataset: "aging", user: alice.address, at: t0 + 100) == nil, "expired exactly at expires")
        #expect(s().rentals[1]!.userOf(at: t0 + 100) == .zero)
        #expect(s().activeRental(dataset: "aging", user: bob.address, at: t0 + 50) == nil)
        // Ended early at t0 + 50.
        try l.append(.endRental(dataset: "aging", rentalID: 1), signer: owner, time: t0 + 50)
        #expect(s().activeRental(dataset: "aging", user: alice.address, at: t0 + 49)?.id == 1, "history: active before the end")
        #expect(s().activeRental(dataset: "aging", user: alice.address, at: t0 + 50) == nil)
        #expect(s().rentals[1]!.userExpires(at: t0 + 60) == 0)
        // Re-rented to someone else.
        try l.append(.setRental(dataset: "aging", rentalID: 1, user: bob.address, expires: t0 + 500), signer: owner, time: t0 + 60)
        #expect(s().activeRental(dataset: "aging", user: bob.address, at: t0 + 60)?.id == 1)
        #expect(s().activeRental(dataset: "aging", user: alice.address, at: t0 + 60) == nil)
        #expect(s().activeRental(dataset: "other", user: bob.address, at: t0 + 60) == nil)
        // A second, concurrent rental of the same dataset.
        try l.append(.setRental(dataset: "aging", rentalID: 2, user: alice.address, expires: t0 + 200), signer: owner, time: t0 + 70)
        #expect(s().activeRental(dataset: "aging", user: alice.address, at: t0 + 199)?.id == 2)
        #expect(s().activeRental(dataset: "aging", user: bob.address, at: t0 + 199)?.id == 1)
        // Everything survives a reopen.
        let again = try EmbeddedLedger(path: dir.sub("l"))
        #expect(again.state.activeRental(dataset: "aging", user: bob.address, at: t0 + 499)?.id == 1)
        #expect(again.state.activeRental(dataset: "aging", user: bob.address, at: t0 + 500) == nil)
        #expect(again.checkpoint() == l.checkpoint())
    }

    @Test func onlyTheOwnerRules() throws {
        let dir = TempDir()
        let l = try EmbeddedLedger.create(path: dir.sub("l"))
        let owner = try key(1), mallory = try key(4)
        let t = UInt64(Date().timeIntervalSince1970) - 1_000_000
        try l.append(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner, time: t)
        func refused(_ op: Ledger.Operation, by k: PrivateKey, _ contains: String) {
            #expect { try l.append(op, signer: k, time: t) } throws: { e in
                guard case LedgerError.refused(let why) = e else { return false }
                return why.contains(contains)
            }
        }
        refused(.setRental(dataset: "aging", rentalID: 1, user: mallory.address, expires: t + 10), by: mallory, "only the owner")
        refused(.registerVersion(dataset: "aging", root: root(2)), by: mallory, "only the owner")
        refused(.registerDataset(dataset: "aging", policyHash: policy, owner: mallory.address), by: mallory, "already registered")
        refused(.setRental(dataset: "nope", rentalID: 1, user: mallory.address, expires: t + 10), by: owner, "not registered")
        refused(.setRental(dataset: "aging", rentalID: 5, user: mallory.address, expires: t + 10), by: owner, "does not exist")
        refused(.setRental(dataset: "aging", rentalID: 1, user: mallory.address, expires: t), by: owner, "expire")
        refused(.endRental(dataset: "aging", rentalID: 1), by: owner, "no rental 1")
        try l.append(.setRental(dataset: "aging", rentalID: 1, user: mallory.address, expires: t + 10), signer: owner, time: t)
        refused(.endRental(dataset: "aging", rentalID: 1), by: mallory, "only the owner")
        refused(.audit(event: "key.release", dataset: "nope", payloadHash: policy), by: mallory, "not registered")
        #expect(throws: LedgerError.self) { try l.append(.audit(event: "rental.set", dataset: nil, payloadHash: policy), signer: mallory, time: t) }
        #expect(throws: LedgerError.self) { try l.append(.audit(event: "Bad Kind", dataset: nil, payloadHash: policy), signer: mallory, time: t) }
        #expect(throws: LedgerError.self) { try l.append(.audit(event: "job.run", dataset: nil, payloadHash: policy), signer: mallory, time: t - 1) }
        // Anyone may record audit events; queries find them by dataset, actor and kind.
        try l.append(.audit(event: "key.release", dataset: "aging", payloadHash: policy), signer: mallory, time: t + 1)
        try l.append(.audit(event: "job.run", dataset: nil, payloadHash: policy), signer: mallory, time: t + 2)
        #expect(l.state.events(matching: EventFilter(dataset: "aging")).count == 3)
        #expect(l.state.events(matching: EventFilter(actor: mallory.address)).map(\.kind) == ["key.release", "job.run"])
        #expect(l.state.events(matching: EventFilter(kind: "rental.set")).count == 1)
        #expect(l.count == 4, "refused operations left nothing behind")
        let r = try EmbeddedLedger.verify(path: dir.sub("l"))
        #expect(r.entries == 4)
    }

    /// docs/ledger.md §2.1, frozen: the same key, fields and previous hash give these bytes.
    @Test func frozenEntryVector() throws {
        let owner = try key(1), user = try key(2)
        let e = try Entry(index: 2, time: 1_900_000_000, previous: [UInt8](repeating: 0xab, count: 32),
                          operation: .setRental(dataset: "aging", rentalID: 1, user: user.address, expires: 1_900_086_400), signer: owner)
        let hex = """
            0203000000000000000200000000713fb300abababababababababababababab\
            abababababababababababababababababab1a642f0e3c3af545e7acbd38b072\
            51b3990914f1056167696e6700000000000000015050a4f4b3f9338c3472dcc0\
            1a87c76a144b3c9c0000000071410480ec7f931812be30cdb4bbda11dd67bcca\
            b0d2c88f2430b31ccc26738c5a890a1930b30b745f0857a8a6d62657eeee910b\
            2fd93940bcea97044c6d66404c5745121c
            """
        #expect(Hex.encode(e.body) == hex)
        #expect(e.body.count == 177)
        #expect(Hex.encode(e.leafHash) == "f62662931958bc76b3151fd0a50c3ccdb44a3aacdfcae6b5a2d00a1f2b689533")
        #expect(try Entry.decode(e.body) == e)
    }

    /// Operator approvals (ERC-721 setApprovalForAll by EIP-712 signature): eth-account signs
    /// the same typed data to the same signature; the operator then acts for the owner until
    /// the approval expires or is revoked; replays, other ledgers' approvals and strangers fail.
    @Test func operatorApprovals() throws {
        let dir = TempDir()
        let l = try EmbeddedLedger.create(path: dir.sub("l"))
        let owner = try key(1), plane = try key(3), mallory = try key(4), user = try key(2)
        let t = UInt64(Date().timeIntervalSince1970) - 1_000_000
        let domain = l.approvalDomain
        #expect(domain.chainId == 0 && domain.salt == SHA256Digest.hash(l.logID).bytes)

        // eth-account, from the JSON a wallet would be shown, signs the same digest to the same bytes.
        let a1 = try OperatorApproval(signing: owner, operator: plane.address, expires: t + 100, nonce: 1, domain: domain)
        let typed = OperatorApproval.typedDataJSON(owner: owner.address, operator: plane.address, expires: t + 100, nonce: 1, domain: domain)
        let input = try JSONSerialization.data(withJSONObject: ["items": [["key": Hex.encode([UInt8](repeating: 1, count: 32)),
                                                                          "typed": try JSONSerialization.jsonObject(with: Data(typed.utf8))]]])
        let r = try run(Repo.python, [Repo.root + "/Tests/interop/eth_tool.py", "sign-typed"], input: input)
        #expect(r.status == 0, "\(r.stderr)")
        let py = try JSONSerialization.jsonObject(with: r.stdout) as! [[String: String]]
        #expect(py[0]["digest"] == Hex.encode(OperatorApproval.digest(owner: owner.address, operator: plane.address, expires: t + 100, nonce: 1, domain: domain)))
        #expect(py[0]["signature"] == Hex.encode(a1.signature.bytes))

        func refused(_ op: Ledger.Operation, by k: PrivateKey, at time: UInt64, _ contains: String) {
            #expect { try l.append(op, signer: k, time: time) } throws: { e in
                guard case LedgerError.refused(let why) = e else { return false }
                return why.contains(contains)
            }
        }
        let register = Ledger.Operation.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address)
        refused(register, by: plane, at: t, "not the owner nor an operator")
        // Signed for another ledger: refused.
        let other = try EmbeddedLedger.create(path: dir.sub("other"))
        let foreign = try OperatorApproval(signing: owner, operator: plane.address, expires: t + 100, nonce: 1, domain: other.approvalDomain)
        refused(.approveOperator(foreign), by: plane, at: t, "signed by")
        // A forged owner field: the signature recovers to someone else.
        let forged = OperatorApproval(owner: owner.address, operator: mallory.address, expires: t + 100, nonce: 1, signature: a1.signature)
        refused(.approveOperator(forged), by: mallory, at: t, "signed by")

        try l.append(.approveOperator(a1), signer: plane, time: t)  // anyone may submit it
        #expect(l.isOperator(plane.address, of: owner.address, at: t + 99))
        #expect(!l.isOperator(plane.address, of: owner.address, at: t + 100))
        #expect(l.approvalNonce(of: owner.address) == 1)
        refused(.approveOperator(a1), by: plane, at: t, "replay")
        try l.append(register, signer: plane, time: t)
        #expect(l.dataset("aging")?.owner == owner.address)
        try l.append(.registerVersion(dataset: "aging", root: root(2)), signer: plane, time: t + 1)
        try l.append(.setRental(dataset: "aging", rentalID: 1, user: user.address, expires: t + 1000), signer: plane, time: t + 2)
        refused(.setRental(dataset: "aging", rentalID: 2, user: mallory.address, expires: t + 1000), by: mallory, at: t + 2, "or an operator it approved")
        // Expired: the operator may no longer act; the owner still may.
        refused(.endRental(dataset: "aging", rentalID: 1), by: plane, at: t + 100, "or an operator it approved")
        let a2 = try OperatorApproval(signing: owner, operator: plane.address, expires: t + 500, nonce: 2, domain: domain)
        try l.append(.approveOperator(a2), signer: owner, time: t + 100)
        try l.append(.registerVersion(dataset: "aging", root: root(3)), signer: plane, time: t + 101)
        // Revoked (expires 0) at once.
        let revoke = try OperatorApproval(signing: owner, operator: plane.address, expires: 0, nonce: 3, domain: domain)
        try l.append(.approveOperator(revoke), signer: plane, time: t + 102)
        refused(.registerVersion(dataset: "aging", root: root(4)), by: plane, at: t + 102, "or an operator it approved")
        try l.append(.endRental(dataset: "aging", rentalID: 1), signer: owner, time: t + 103)
        // An approval already expired when recorded is refused.
        let stale = try OperatorApproval(signing: owner, operator: plane.address, expires: t + 50, nonce: 4, domain: domain)
        refused(.approveOperator(stale), by: plane, at: t + 103, "expired")

        // Reopened from the file, the same answers.
        let again = try EmbeddedLedger(path: dir.sub("l"))
        #expect(!again.isOperator(plane.address, of: owner.address, at: t + 102))
        #expect(again.approvalNonce(of: owner.address) == 3)
        #expect(again.dataset("aging")?.versions.count == 2)
        #expect(try EmbeddedLedger.verify(path: dir.sub("l")).entries == 8)
    }

    /// Entry signatures are plain personal_sign: eth-account recovers each actor.
    @Test func entrySignaturesCheckWithEthAccount() throws {
        let dir = TempDir()
        let l = try EmbeddedLedger.create(path: dir.sub("l"))
        let keys = try (1...5).map { try key(UInt8($0)) }
        try l.append(.registerDataset(dataset: "aging", policyHash: policy, owner: keys[0].address), signer: keys[0])
        for k in keys { try l.append(.audit(event: "job.run", dataset: "aging", payloadHash: root(9)), signer: k) }
        let entries = try (0..<l.count).map { try l.entry($0) }
        let items = entries.map { ["message": Hex.encode(Entry.signingDigest($0.unsignedBody)), "signature": Hex.encode($0.signature.bytes)] }
        let input = try JSONSerialization.data(withJSONObject: ["items": items])
        let r = try run(Repo.python, [Repo.root + "/Tests/interop/eth_tool.py", "recover"], input: input)
        #expect(r.status == 0, "\(r.stderr)")
        let recovered = try JSONSerialization.jsonObject(with: r.stdout) as! [String]
        #expect(recovered == entries.map(\.actor.checksummed))
    }

    @Test func checkpointsAreSignedNotes() throws {
        let dir = TempDir()
        let l = try EmbeddedLedger.create(path: dir.sub("l"))
        let owner = try key(1), other = try key(2)
        try l.append(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner)
        let note = try l.checkpoint().signed(by: owner)
        let lines = note.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[0] == Substring(l.origin) && lines[1] == "1" && lines[3] == "" && lines[4].hasPrefix("— cce4long.ledger/0x"))
        let (cp, signers) = try Checkpoint.open(note, trusted: owner.address)
        #expect(cp == l.checkpoint() && signers == [owner.address])
        #expect(throws: LedgerError.self) { try Checkpoint.open(note, trusted: other.address) }
        #expect(throws: LedgerError.self) { try Checkpoint.open(note.replacingOccurrences(of: "\n1\n", with: "\n2\n")) }
        #expect(throws: LedgerError.self) { try Checkpoint.open(String(note.prefix(note.count - 10)) + "AAAAAAAAA\n") }
        #expect(throws: LedgerError.self) { try Checkpoint.open(l.checkpoint().text + "\n") }
        // Random damage to a note never crashes and never yields a different checkpoint.
        var g = SeededGenerator(seed: 31)
        let bytes = Array(note.utf8)
        for _ in 0..<3000 {
            var b = bytes
            for _ in 0..<(1 + Int(g.next() % 3)) { b[Int(g.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: g.next() % 128) }
            if let (c, _) = try? Checkpoint.open(String(decoding: b, as: UTF8.self)) { #expect(c == cp) }
        }
        // The key name must carry the EIP-55 address the key ID was made from.
        let lowered = note.replacingOccurrences(of: owner.address.checksummed, with: owner.address.checksummed.lowercased())
        #expect(throws: LedgerError.self) { try Checkpoint.open(lowered) }
        // A second signature (a witness) is fine; unknown key types are ignored.
        let cosigned = note + "— witness.example/abc AAAAAQ==\n"
        #expect(try Checkpoint.open(cosigned).signers == [owner.address])
    }
}

@Suite struct FileTests {
    /// A ledger of `n` entries by three signers.
    static func make(_ path: String, entries n: Int) throws {
        let l = try EmbeddedLedger.create(path: path)
        let owner = try key(1), alice = try key(2)
        let t = UInt64(Date().timeIntervalSince1970) - 1_000_000
        try l.append(.registerDataset(dataset: "aging", policyHash: policy, owner: owner.address), signer: owner, time: t)
        try l.append(.setRental(dataset: "aging", rentalID: 1, user: alice.address, expires: t + 2000), signer: owner, time: t)
        for i in 2..<n { try l.append(.audit(event: "job.run", dataset: "aging", payloadHash: root(UInt8(i % 256))), signer: alice, time: t + UInt64(i)) }
    }

    static func caught(_ path: String, expected n: UInt64) -> Bool {
        do {
            let r = try EmbeddedLedger.verify(path: path)
            return r.incompleteTailBytes > 0 || r.entries != n
        } catch { return true }
    }

    /// Flipping any byte anywhere in the file, dropping an entry, or swapping two is caught.
    @Test func everyByteFlipDropAndReorderIsCaught() throws {
        let dir = TempDir()
        let path = dir.sub("l")
        try Self.make(path, entries: 12)
        let good = try readFile(path)
        #expect(!Self.caught(path, expected: 12))
        let bad = dir.sub("bad")
        for i in 0..<good.count {
            var b = good; b[i] ^= UInt8(1 << (i % 8))
            try writeFile(bad, b)
            #expect(Self.caught(bad, expected: 12), "flip at byte \(i) went unnoticed")
            // Nor does a writer take a flip for a torn append and cut it off.
            #expect(throws: LedgerError.self, "a writer opened a file with byte \(i) flipped") { try EmbeddedLedger(path: bad, writable: true) }
        }
        // Record boundaries, to drop and swap whole entries.
        var bounds = [EmbeddedLedger.headerSize]
        while bounds.last! < good.count {
            let at = bounds.last!
            let len = Int(good[at..<(at + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            bounds.append(at + 4 + len + 32)
        }
        #expect(bounds.count == 13)
        for e in 0..<11 {
            let rec = { (k: Int) in Array(good[bounds[k]..<bounds[k + 1]]) }
            try writeFile(bad, Array(good[..<bounds[e]]) + Array(good[bounds[e + 1]...]))
            #expect(Self.caught(bad, expected: 12), "dropping entry \(e) went unnoticed")
            try writeFile(bad, Array(good[..<bounds[e]]) + rec(e + 1) + rec(e) + Array(good[bounds[e + 2]...]))
            #expect(Self.caught(bad, expected: 12), "swapping entries \(e) and \(e + 1) went unnoticed")
        }
        // Dropping the last entry cleanly is only visible against a checkpoint.
        let cp = try EmbeddedLedger(path: path).checkpoint()
        try writeFile(bad, Array(good[..<bounds[11]]))
        #expect(throws: LedgerError.self) { try EmbeddedLedger.verify(path: bad, against: cp) }
    }

    /// A record cut anywhere is dropped by the next writer (and kept aside), and the ledger verifies.
    @Test func tornLastEntryIsDroppedOnOpen() throws {
        let dir = TempDir()
        let path = dir.sub("l")
        try Self.make(path, entries: 5)
        let good = try readFile(path)
        let full = try EmbeddedLedger(path: path)
        let before = try EmbeddedLedger(path: path).tree.root(size: 4)
        var lastStart = EmbeddedLedger.headerSize
        for _ in 0..<4 { lastStart += 4 + Int(good[lastStart..<(lastStart + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) + 32 }
        #expect(full.count == 5)
        for cut in lastStart..<good.count {
            let p = dir.sub("t\(cut)")
            try writeFile(p, Array(good[..<cut]))
            let reader = try EmbeddedLedger(path: p)
            #expect(reader.count == 4, "a reader ignores the incomplete record")
            let writer = try EmbeddedLedger(path: p, writable: true)
            #expect(writer.count == 4)
            #expect(try readFile(p).count == lastStart, "the torn bytes are gone from the file")
            let r = try EmbeddedLedger.verify(path: p)
            #expect(r.entries == 4 && r.incompleteTailBytes == 0 && r.checkpoint.root == before)
            try writer.append(.audit(event: "job.run", dataset: "aging", payloadHash: root(1)), signer: try key(2))
            #expect(try EmbeddedLedger.verify(path: p).entries == 5)
        }
        let kept = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".torn-") }
        #expect(kept.count == good.count - lastStart - 1, "each torn tail is kept beside its ledger")
    }

    /// Appends a raw record (a valid frame and hash around any entry) to a ledger file.
    static func appendRaw(_ path: String, _ entry: Entry) throws {
        var w = Writer(); w.u32(UInt32(entry.body.count)); w.raw(entry.body); w.raw(entry.leafHash)
        try writeFile(path, try readFile(path) + w.bytes)
    }

    /// Hostile but well-framed entries: a huge index, a future date, a bad signature. Readers
    /// refuse them without crashing, and an open ledger that meets one answers nothing.
    @Test func hostileEntriesAreRefused() throws {
        let dir = TempDir()
        let path = dir.sub("l")
        try Self.make(path, entries: 3)
        let live = try EmbeddedLedger(path: path)
        let alice = try key(2)
        #expect(live.activeRental(dataset: "aging", user: alice.address, at: UInt64(Date().timeIntervalSince1970) - 999_000) != nil)
        let good = try readFile(path)
        let last = try live.entry(2)
        let now = UInt64(Date().timeIntervalSince1970)
        let cases: [(String, Entry)] = [
            ("huge index", try Entry(index: 1 << 63, time: now, previous: last.leafHash, operation: .audit(event: "job.run", dataset: nil, payloadHash: root(1)), signer: alice)),
            ("future date", try Entry(index: 3, time: now + 10_000_000, previous: last.leafHash, operation: .audit(event: "job.run", dataset: nil, payloadHash: root(1)), signer: alice)),
            ("other signer", Entry(index: 3, time: now, previous: last.leafHash, actor: try key(1).address, operation: .audit(event: "job.run", dataset: nil, payloadHash: root(1)),
                                   signature: try alice.signPersonal([1]))),
        ]
        for (name, e) in cases {
            try writeFile(path, good)
            try Self.appendRaw(path, e)
            #expect(throws: LedgerError.self, "\(name)") { try EmbeddedLedger.verify(path: path) }
            #expect(throws: LedgerError.self, "\(name)") { try EmbeddedLedger(path: path, writable: true) }
        }
        // The live reader meets the bad entry on refresh: it fails closed from then on.
        #expect(throws: LedgerError.self) { try live.refresh() }
        #expect(live.activeRental(dataset: "aging", user: alice.address, at: now - 999_000) == nil)
        #expect(live.events(matching: EventFilter()).isEmpty)
        #expect(throws: LedgerError.self) { try live.append(.audit(event: "job.run", dataset: nil, payloadHash: root(1)), signer: alice) }
        // Appending a future-dated entry is refused up front.
        try writeFile(path, good)
        let w = try EmbeddedLedger(path: path, writable: true)
        #expect(throws: LedgerError.self) { try w.append(.audit(event: "job.run", dataset: nil, payloadHash: root(1)), signer: alice, time: now + 10_000_000) }
        // A tail of zeros (a power cut mid-append) is torn, not tampered: dropped.
        try writeFile(path, good + [UInt8](repeating: 0, count: 100))
        #expect(try EmbeddedLedger(path: path, writable: true).count == 3)
        #expect(try readFile(path) == good)
    }

    @Test func fuzzedRecordsNeverCrash() throws {
        let dir = TempDir()
        let path = dir.sub("l")
        try Self.make(path, entries: 4)
        let good = try readFile(path)
        var g = SeededGenerator(seed: 404)
        let bad = dir.sub("bad")
        for _ in 0..<3000 {
            var b = good
            for _ in 0..<(1 + Int(g.next() % 6)) {
                switch g.next() % 3 {
                case 0: b[Int(g.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: g.next())
                case 1: b.insert(UInt8(truncatingIfNeeded: g.next()), at: Int(g.next() % UInt64(b.count)))
                default: b.remove(at: Int(g.next() % UInt64(b.count)))
                }
            }
            if b == good { continue } // an insert undone by a remove: no change to catch
            try writeFile(bad, b)
            #expect(Self.caught(bad, expected: 4))
        }
        for _ in 0..<3000 {
            _ = try? Entry.decode(g.bytes(Int(g.next() % 400)))
        }
    }
}

/// The CLI, as separate processes: concurrent writers, SIGKILL, checkpoints, proofs.
@Suite(.serialized) struct ProcessTests {
    static let cce4 = Repo.binary("cce4")
    static let env: [String: String] = {
        var e = ProcessInfo.processInfo.environment
        e["CCE4_WALLET_PASSWORD"] = "test password"
        return e
    }()

    @discardableResult
    static func cli(_ args: [String], ok: Bool = true) throws -> ProcessResult {
        let r = try run(cce4, args, environment: env)
        if ok && r.status != 0 { throw TestFailure("cce4 \(args.joined(separator: " ")) exited \(r.status): \(r.stderr)") }
        return r
    }

    static func wallets(_ dir: TempDir, _ names: [String]) throws -> [String: String] {
        var out = [String: String]()
        for n in names {
            out[n] = try cli(["wallet", "new", "--keystore", dir.sub(n + ".json"), "--kdf", "light"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return out
    }

    /// Starts `cce4 ledger record --batch` in the background.
    static func record(_ ledger: String, keystore: String, batch: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: cce4)
        p.arguments = ["ledger", "record", "--ledger", ledger, "--keystore", keystore, "--batch", batch]
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return p
    }

    static func batch(_ path: String, count: Int, tag: Int) throws {
        var lines = ""
        for i in 0..<count { lines += "{\"kind\":\"job.run\",\"dataset\":\"aging\",\"payload_hash\":\"\(Hex.encode(SHA256Digest.hash(Array("\(tag)-\(i)".utf8)).bytes))\"}\n" }
        try writeFile(path, Array(lines.utf8))
    }

    /// 10,000 appends from 4 processes at once while a reader takes checkpoints; then the
    /// whole file verifies, every entry has an inclusion proof against the last checkpoint,
    /// and every checkpoint is consistent with the next.
    @Test func tenThousandAppendsFromFourProcesses() throws {
        let dir = TempDir()
        let ledger = dir.sub("ledger")
        let who = try Self.wallets(dir, ["owner", "w0", "w1", "w2", "w3"])
        try Self.cli(["ledger", "init", "--ledger", ledger])
        try Self.cli(["ledger", "dataset", "register", "--ledger", ledger, "--keystore", dir.sub("owner.json"), "--dataset", "aging",
                      "--policy-hash", Hex.encode(policy)])
        var procs = [Process]()
        for w in 0..<4 {
            try Self.batch(dir.sub("b\(w)"), count: 2500, tag: w)
            procs.append(try Self.record(ledger, keystore: dir.sub("w\(w).json"), batch: dir.sub("b\(w)")))
        }
        // Readers never block writers: a few checkpoints while they run.
        var notes = [String]()
        while procs.contains(where: \.isRunning) && notes.count < 4 {
            usleep(1_500_000)
            let r = try Self.cli(["ledger", "checkpoint", "--ledger", ledger, "--keystore", dir.sub("owner.json")])
            notes.append(r.stdoutText)
        }
        for p in procs { p.waitUntilExit(); #expect(p.terminationStatus == 0) }
        notes.append(try Self.cli(["ledger", "checkpoint", "--ledger", ledger, "--keystore", dir.sub("owner.json")]).stdoutText)
        let sizes = notes.map { UInt64($0.split(separator: "\n")[1])! }
        #expect(sizes.last == 10_001)
        #expect(notes.count >= 2, "checkpoints taken while the writers ran")
        let verify = try Self.cli(["ledger", "verify", "--ledger", ledger])
        #expect(verify.stdoutText.hasPrefix("OK: 10001 entries"))
        let l = try EmbeddedLedger(path: ledger)
        #expect(Set(l.state.events.map(\.actor)) == Set(try ["owner", "w0", "w1", "w2", "w3"].map { try Address(who[$0]!) }))
        // Every entry against the last checkpoint (library, then a sample through the CLI).
        let (last, _) = try Checkpoint.open(notes.last!, trusted: try Address(who["owner"]!))
        #expect(last.root == l.tree.root(size: last.size))
        for i in 0..<last.size {
            let p = try l.tree.inclusionProof(index: i, size: last.size)
            try Merkle.verifyInclusion(leafHash: l.tree.leafHash(i), index: i, size: last.size, path: p, root: last.root)
        }
        try writeFile(dir.sub("last"), Array(notes.last!.utf8))
        for i in [0, 1, 4999, 10_000] {
            let proof = try Self.cli(["ledger", "prove", "--ledger", ledger, "--entry", "\(i)", "--checkpoint", dir.sub("last")])
            try writeFile(dir.sub("p"), Array(proof.stdout))
            try Self.cli(["ledger", "check-proof", "--proof", dir.sub("p"), "--checkpoint", dir.sub("last"), "--signer", who["owner"]!])
        }
        // Each checkpoint is consistent with the next (CLI, offline check).
        for k in 1..<notes.count {
            try writeFile(dir.sub("old"), Array(notes[k - 1].utf8))
            try writeFile(dir.sub("new"), Array(notes[k].utf8))
            let proof = try Self.cli(["ledger", "prove", "--ledger", ledger, "--old", dir.sub("old"), "--checkpoint", dir.sub("new")])
            try writeFile(dir.sub("c"), Array(proof.stdout))
            try Self.cli(["ledger", "check-proof", "--proof", dir.sub("c"), "--checkpoint", dir.sub("new"), "--old", dir.sub("old"), "--signer", who["owner"]!])
        }
        try Self.cli(["ledger", "verify", "--ledger", ledger, "--checkpoint", dir.sub("new"), "--signer", who["owner"]!])
    }

    /// A writer killed with SIGKILL mid-batch leaves a ledger that opens and verifies.
    @Test func sigkillMidAppend() throws {
        let dir = TempDir()
        let ledger = dir.sub("ledger")
        _ = try Self.wallets(dir, ["owner"])
        try Self.cli(["ledger", "init", "--ledger", ledger])
        try Self.cli(["ledger", "dataset", "register", "--ledger", ledger, "--keystore", dir.sub("owner.json"), "--dataset", "aging",
                      "--policy-hash", Hex.encode(policy)])
        try Self.batch(dir.sub("b"), count: 20_000, tag: 9)
        var g = SeededGenerator(seed: 9)
        var last: UInt64 = 1
        for round in 0..<5 {
            let before = try FileManager.default.attributesOfItem(atPath: ledger)[.size] as! Int
            let p = try Self.record(ledger, keystore: dir.sub("owner.json"), batch: dir.sub("b"))
            // Kill it once it is appending, at a random moment.
            while try FileManager.default.attributesOfItem(atPath: ledger)[.size] as! Int == before && p.isRunning { usleep(2000) }
            usleep(UInt32(g.next() % 200_000))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(p.terminationReason == .uncaughtSignal, "round \(round)")
            try Self.cli(["ledger", "repair", "--ledger", ledger])
            let v = try Self.cli(["ledger", "verify", "--ledger", ledger])
            let n = UInt64(v.stdoutText.split(separator: " ")[1])!
            #expect(n > last, "round \(round): the batch made progress before the kill")
            last = n
        }
    }

    /// Two `rent` commands at once make two rentals; neither takes the other's.
    @Test func concurrentRentsMakeTwoRentals() throws {
        let dir = TempDir()
        let ledger = dir.sub("ledger")
        let who = try Self.wallets(dir, ["owner", "a", "b"])
        try Self.cli(["ledger", "init", "--ledger", ledger])
        try Self.cli(["ledger", "dataset", "register", "--ledger", ledger, "--keystore", dir.sub("owner.json"), "--dataset", "aging", "--policy-hash", Hex.encode(policy)])
        for round in 0..<3 {
            let procs = try ["a", "b"].map { u -> Process in
                let p = Process()
                p.executableURL = URL(fileURLWithPath: Self.cce4)
                p.arguments = ["ledger", "rent", "--ledger", ledger, "--keystore", dir.sub("owner.json"), "--dataset", "aging", "--user", who[u]!, "--for", "1d"]
                p.environment = Self.env
                p.standardOutput = FileHandle.nullDevice
                try p.run()
                return p
            }
            for p in procs { p.waitUntilExit(); #expect(p.terminationStatus == 0, "round \(round)") }
        }
        let l = try EmbeddedLedger(path: ledger)
        #expect(l.state.rentals.count == 6)
        #expect(l.state.rentals.values.allSatisfy { $0.history.count == 1 }, "no rental was given twice")
        let now = UInt64(Date().timeIntervalSince1970)
        for u in ["a", "b"] { #expect(try l.state.rentals.values.filter { $0.userOf(at: now) == (try Address(who[u]!)) }.count == 3) }
    }

    @Test func cliErrorsAreClear() throws {
        let dir = TempDir()
        let ledger = dir.sub("ledger")
        let who = try Self.wallets(dir, ["owner", "user"])
        try Self.cli(["ledger", "init", "--ledger", ledger])
        var r = try Self.cli(["ledger", "init", "--ledger", ledger], ok: false)
        #expect(r.status == 73 || r.status == 74)
        #expect(r.stderr.contains("already exists"))
        r = try Self.cli(["ledger", "status", "--ledger", dir.sub("missing")], ok: false)
        #expect(r.status == 66 && r.stderr.contains("cce4 ledger init"))
        try Self.cli(["ledger", "dataset", "register", "--ledger", ledger, "--keystore", dir.sub("owner.json"), "--dataset", "aging", "--policy-hash", Hex.encode(policy)])
        r = try Self.cli(["ledger", "rent", "--ledger", ledger, "--keystore", dir.sub("user.json"), "--dataset", "aging", "--user", who["user"]!, "--for", "1d"], ok: false)
        #expect(r.status == 77 && r.stderr.contains("only the owner"))
        r = try Self.cli(["ledger", "status", "--ledger", ledger, "--dataset", "aging", "--user", who["user"]!], ok: false)
        #expect(r.status == 1 && r.stdoutText.contains("no active rental"))
        try Self.cli(["ledger", "rent", "--ledger", ledger, "--keystore", dir.sub("owner.json"), "--dataset", "aging", "--user", who["user"]!, "--for", "1d"])
        r = try Self.cli(["ledger", "status", "--ledger", ledger, "--dataset", "aging", "--user", who["user"]!])
        #expect(r.stdoutText.hasPrefix("active: rental 1"))
        var wrong = Self.env; wrong["CCE4_WALLET_PASSWORD"] = "nope"
        r = try run(Self.cce4, ["ledger", "end-rental", "--ledger", ledger, "--keystore", dir.sub("owner.json"), "--dataset", "aging", "--rental", "1"], environment: wrong)
        #expect(r.status == 77 && r.stderr.contains("wrong password"))
        // Bad numbers and proofs of what is not there: usage errors, never crashes.
        r = try Self.cli(["ledger", "rent", "--ledger", ledger, "--keystore", dir.sub("owner.json"), "--dataset", "aging", "--user", who["user"]!, "--for", "999999999999999999d"], ok: false)
        #expect(r.status == 64)
        r = try Self.cli(["ledger", "prove", "--ledger", ledger, "--entry", "99"], ok: false)
        #expect(r.status == 64 && r.stderr.contains("not among"))
        try writeFile(dir.sub("m"), Array("example.com wants you to sign in with your Ethereum account:\n\(who["user"]!)\n\n\nURI: https://example.com\nVersion: 1\nChain ID: 1\nNonce: 12345678\nIssued At: 2026-01-01T00:00:00Z".utf8))
        let sm = try Self.cli(["wallet", "sign", "--keystore", dir.sub("user.json"), "--file", dir.sub("m")]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        r = try Self.cli(["wallet", "siwe-verify", "--message-file", dir.sub("m"), "--signature", sm, "--at", "99999999999999999999"], ok: false)
        #expect(r.status == 0 || r.status == 64 || r.status == 65, "no crash: \(r.status)")
        r = try Self.cli(["wallet", "siwe-verify", "--message-file", dir.sub("m"), "--signature", sm, "--domain", "example.com"])
        #expect(r.stdoutText.hasPrefix("valid: \(who["user"]!)"))
        // A checkpoint is only as good as its signer: naming one is required.
        try writeFile(dir.sub("cp"), Array(try Self.cli(["ledger", "checkpoint", "--ledger", ledger, "--keystore", dir.sub("user.json")]).stdout))
        r = try Self.cli(["ledger", "verify", "--ledger", ledger, "--checkpoint", dir.sub("cp")], ok: false)
        #expect(r.status == 64 && r.stderr.contains("--signer"))
        r = try Self.cli(["ledger", "verify", "--ledger", ledger, "--checkpoint", dir.sub("cp"), "--signer", who["owner"]!], ok: false)
        #expect(r.status == 65)
        // Sign and verify through the CLI, checked by eth-account.
        let sig = try Self.cli(["wallet", "sign", "--keystore", dir.sub("user.json"), "hello ledger"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        try Self.cli(["wallet", "verify", "--address", who["user"]!, "--signature", sig, "hello ledger"])
        r = try Self.cli(["wallet", "verify", "--address", who["owner"]!, "--signature", sig, "hello ledger"], ok: false)
        #expect(r.status == 65)
        // A keystore written by the CLI opens in eth-account with the same address.
        let ks = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.sub("user.json"))))
        let input = try JSONSerialization.data(withJSONObject: ["keystore": ks, "password": "test password"])
        let py = try run(Repo.python, [Repo.root + "/Tests/interop/eth_tool.py", "keystore-decrypt"], input: input)
        #expect(py.status == 0)
        let keyHex = (try JSONSerialization.jsonObject(with: py.stdout) as! [String: String])["key"]!
        #expect(try PrivateKey(bytes: Hex.decode(keyHex)!).address.checksummed == who["user"]!)
    }
}
