// cce4 ledger: the embedded ledger — datasets, rentals (ERC-4907) and audit events in one
// signed, hash-chained, Merkle-tree file; checkpoints and proofs anyone can check.
import ArgumentParser
import EVM
import Envelope
import Foundation
import Ledger
import Logging
import Wallet

struct LedgerOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The ledger: a file (the embedded engine), or a chain as evm+http://HOST:PORT?chain=ID&rental=0x…&audit=0x… (docs/ledger.md §7.1). Default: $CCE4_LEDGER.", valueName: "location"))
    var ledger: String?

    var path: String {
        get throws {
            try optionOrEnvironment(ledger, "CCE4_LEDGER",
                                    missing: "which ledger? pass --ledger FILE (or set CCE4_LEDGER); make one with `cce4 ledger init --ledger FILE`")
        }
    }

    /// The embedded engine itself (checkpoints, proofs, verification).
    func open(writable: Bool = false) throws -> EmbeddedLedger {
        bootstrapLedgerLogging()
        let p = try filePath
        return try EmbeddedLedger(path: p.hasPrefix("file://") ? String(p.dropFirst(7)) : p, writable: writable)
    }

    /// Whatever engine the location names, through the engine-neutral interface.
    func engine(writable: Bool = false) throws -> any LedgerEngine {
        bootstrapLedgerLogging()
        return try Ledgers.open(try path, writable: writable)
    }

    /// The ledger file's path; a chain location is refused (a usage error that says why).
    var filePath: String {
        get throws {
            let p = try path
            guard !EVMLocation.isEVM(p) else {
                throw Failure(description: "this command works on ledger files; \(RPCEndpoint.redact(String(p.dropFirst(4)))) is a chain ledger (use dataset, rent, end-rental, record, status, events; docs/ledger.md §7)",
                              exitCode: Failure.usage)
            }
            return p
        }
    }

    /// Whether the location is a chain (evm+http://…).
    var isChain: Bool { (try? path).map(EVMLocation.isEVM) ?? false }
}

/// A chain engine's queries answer nothing when a read failed (fail closed); the CLI says why.
func throwIfChainFailed(_ l: any LedgerEngine) throws {
    if let e = (l as? EVMLedger)?.lastError { throw e }
}

nonisolated(unsafe) var ledgerLoggingReady = false
func bootstrapLedgerLogging() {
    guard !ledgerLoggingReady else { return }
    ledgerLoggingReady = true
    bootstrapLogging(.info)
}

func hash32(_ text: String, _ what: String) throws -> [UInt8] { try parseHex(text, bytes: 32, option: what) }

/// RFC 3339 for times up to the year 9999, else the Unix seconds as given.
func formatTime(_ t: UInt64) -> String { t <= 253_402_300_799 ? SIWETime(unixSeconds: Int64(t)).text : "\(t) (Unix seconds)" }

struct LedgerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "The embedded ledger: datasets, rentals and audit events, signed and verifiable.",
        discussion: """
        Every entry is signed by its author's wallet (EIP-191) and chained to the one before; \
        the file is also an RFC 6962 Merkle tree with signed checkpoints and proofs. Only a \
        dataset's owner registers its versions and grants or ends its rentals. See docs/ledger.md.
        """,
        subcommands: [Init.self, Deploy.self, DatasetCmd.self, Rent.self, EndRental.self, ApproveOperator.self, Record.self, Status.self, Events.self,
                      Verify.self, Checkpoint_.self, Prove.self, CheckProof.self, Repair.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a new, empty ledger file and print its origin (its name in checkpoints).")
        @OptionGroup var ledger: LedgerOptions
        func run() throws {
            try guarded {
                guard !ledger.isChain else { throw Failure(description: "a chain ledger is made with `cce4 ledger deploy --rpc URL`, not init", exitCode: Failure.usage) }
                let l = try EmbeddedLedger.create(path: try ledger.path)
                print(l.origin)
            }
        }
    }

    struct Deploy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deploy the ledger's contracts (Rentals, Audit) to an EVM chain and print the ledger location.",
            discussion: """
            Sends two EIP-1559 transactions signed by the keystore's wallet (which pays their gas and \
            becomes the Audit contract's admin), waits for their receipts, and prints \
            evm+http://HOST:PORT?chain=ID&rental=0x…&audit=0x…&from=BLOCK for --ledger. With \
            --writer, also allows those addresses to record audit events. See docs/ledger.md §7.
            """)
        @Option(help: ArgumentHelp("The chain's JSON-RPC endpoint (http or https).", valueName: "url")) var rpc: String
        @OptionGroup var signer: SignerOptions
        @Option(help: "The block tag the ledger reads at: finalized (default), safe or latest.") var block: String = "finalized"
        @Option(help: ArgumentHelp("An address allowed to record audit events (repeatable; the deployer always may).", valueName: "address")) var writer: [String] = []
        @Option(help: "Seconds to wait for each request and receipt.") var timeout: Double = 60
        func run() throws {
            try guarded {
                bootstrapLedgerLogging()
                guard rpc.hasPrefix("http://") || rpc.hasPrefix("https://") else { throw Failure(description: "--rpc must be an http:// or https:// URL", exitCode: Failure.usage) }
                guard ["finalized", "safe", "latest"].contains(block) else { throw Failure(description: "--block must be finalized, safe or latest", exitCode: Failure.usage) }
                let writers = try writer.map { try Address($0) }
                let key = try signer.load()
                let loc = try EVMLedger.deploy(rpcURL: rpc, signer: key, block: block, timeout: timeout)
                let l = try EVMLedger(location: loc)
                for w in writers { try l.setAuditWriter(w, allowed: true, admin: key) }
                print(loc.text)
            }
        }
    }

    struct DatasetCmd: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "dataset", abstract: "Register datasets and their versions.",
                                                        subcommands: [Register.self, Version.self])
        struct Register: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Register a dataset; the signer (or --owner, who approved the signer as operator) becomes its owner.")
            @OptionGroup var ledger: LedgerOptions
            @OptionGroup var signer: SignerOptions
            @Option(help: "The owner, when the signer is an operator it approved (default: the signer).") var owner: String?
            @Option(help: "The dataset id (as packed: 1-64 of a-z 0-9 . - _).") var dataset: String
            @Option(help: "SHA-256 of the dataset's policy document, hex.") var policyHash: String?
            @Option(help: ArgumentHelp("The policy document (its SHA-256 is recorded).", valueName: "file")) var policy: String?
            @Option(help: "Also register this first version (root hash from `cce4 dataset pack`).") var root: String?
            func run() throws {
                try guarded {
                    let hash: [UInt8]
                    switch (policyHash, policy) {
                    case (let h?, nil): hash = try hash32(h, "--policy-hash")
                    case (nil, let f?):
                        guard let d = FileManager.default.contents(atPath: f) else { throw Failure(description: "cannot read \(f)", exitCode: Failure.noInput) }
                        hash = SHA256Digest.hash(Array(d)).bytes
                    default: throw Failure(description: "give the policy once: --policy FILE or --policy-hash HEX", exitCode: Failure.usage)
                    }
                    let l = try ledger.engine(writable: true), key = try signer.load()
                    let owner = try self.owner.map { try Address($0) } ?? key.address
                    let e = try l.submit(.registerDataset(dataset: dataset, policyHash: hash, owner: owner), signer: key)
                    print("entry \(e.index): dataset \(dataset) registered, owner \(owner)")
                    if let root {
                        let v = try l.submit(.registerVersion(dataset: dataset, root: try hash32(root, "--root")), signer: key)
                        print("entry \(v.index): version \(root) of \(dataset)")
                    }
                }
            }
        }
        struct Version: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Record a new version (root hash) of a dataset you own.")
            @OptionGroup var ledger: LedgerOptions
            @OptionGroup var signer: SignerOptions
            @Option(help: "The dataset id.") var dataset: String
            @Option(help: "The version's root hash (printed by `cce4 dataset pack`).") var root: String
            func run() throws {
                try guarded {
                    let l = try ledger.engine(writable: true)
                    let e = try l.submit(.registerVersion(dataset: dataset, root: try hash32(root, "--root")), signer: try signer.load())
                    print("entry \(e.index): version \(root) of \(dataset)")
                }
            }
        }
    }

    struct Rent: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Grant a rental of a dataset you own to USER until a time (ERC-4907 setUser); print the rental id.",
            discussion: "Without --rental a new rental is made. With --rental N, rental N is given to USER (re-rented or extended).")
        @OptionGroup var ledger: LedgerOptions
        @OptionGroup var signer: SignerOptions
        @Option(help: "The dataset id.") var dataset: String
        @Option(help: "The consumer's address.") var user: String
        @Option(help: "End of the rental (exclusive): RFC 3339 or Unix seconds.") var until: String?
        @Option(name: .customLong("for"), help: "Length of the rental from now: e.g. 3600s, 90m, 12h, 30d.") var duration: String?
        @Option(help: "Re-rent or extend this existing rental instead of making a new one.") var rental: UInt64?
        func run() throws {
            try guarded {
                let expires = try endTime(until: until, duration: duration)
                let l = try ledger.engine(writable: true)
                let user = try Address(self.user)
                // Id 0: a new rental, numbered by the engine under its lock (two concurrent
                // `rent` commands get two rentals, never the same one twice).
                let e = try l.submit(.setRental(dataset: dataset, rentalID: rental ?? 0, user: user, expires: expires), signer: try signer.load())
                guard case .setRental(_, let got, _, _) = e.operation else { return }
                print("rental \(got): \(user) may use \(dataset) until \(formatTime(expires)) (entry \(e.index))")
            }
        }
    }

    struct ApproveOperator: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "approve-operator",
            abstract: "Approve (or revoke) an operator that may register datasets and grant rentals for your wallet.",
            discussion: """
            The wallet signs an EIP-712 OperatorApproval (ERC-721 setApprovalForAll by signature) over this ledger's             domain, and the approval is recorded. A Privacy Plane asks for one at sign-in (`cce4 plane login` signs it);             this command makes one directly. --revoke records an approval that expires at once.
            """)
        @OptionGroup var ledger: LedgerOptions
        @OptionGroup var signer: SignerOptions
        @Option(help: "The operator's address (the Privacy Plane's identity).") var `operator`: String
        @Option(help: "End of the approval (exclusive): RFC 3339 or Unix seconds.") var until: String?
        @Option(name: .customLong("for"), help: "Length of the approval from now: e.g. 12h, 30d.") var duration: String?
        @Flag(help: "Revoke the operator instead.") var revoke = false
        func run() throws {
            try guarded {
                let expires: UInt64
                switch (until, duration, revoke) {
                case (nil, nil, true): expires = 0
                case (_, _, false) where (until == nil) != (duration == nil): expires = try endTime(until: until, duration: duration)
                default: throw Failure(description: "give one of --until TIME, --for DURATION or --revoke", exitCode: Failure.usage)
                }
                let l = try ledger.engine(writable: true), key = try signer.load()
                let op = try Address(self.operator)
                let approval = try OperatorApproval(signing: key, operator: op, expires: expires,
                                                    nonce: l.approvalNonce(of: key.address) + 1, domain: l.approvalDomain)
                let e = try l.submit(.approveOperator(approval), signer: key)
                print(revoke ? "operator \(op) revoked for \(key.address) (entry \(e.index))"
                             : "operator \(op) may act for \(key.address) until \(formatTime(expires)) (entry \(e.index))")
            }
        }
    }

    struct EndRental: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "end-rental", abstract: "End a rental early (ERC-4907 setUser to the zero address).")
        @OptionGroup var ledger: LedgerOptions
        @OptionGroup var signer: SignerOptions
        @Option(help: "The dataset id.") var dataset: String
        @Option(help: "The rental id.") var rental: UInt64
        func run() throws {
            try guarded {
                let e = try ledger.engine(writable: true).submit(.endRental(dataset: dataset, rentalID: rental), signer: try signer.load())
                print("rental \(rental) of \(dataset) ended (entry \(e.index))")
            }
        }
    }

    struct Record: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Append audit events (key releases, jobs, outputs…), one signed entry each.",
            discussion: """
            With --batch, FILE (or - for standard input) has one JSON object per line: \
            {"kind": "...", "dataset": "..." (optional), "payload_hash": "<64 hex>"}; each is \
            appended on its own (lock, write, fsync), so other writers interleave.
            """)
        @OptionGroup var ledger: LedgerOptions
        @OptionGroup var signer: SignerOptions
        @Option(help: "Event kind, e.g. key.release (a-z 0-9 . - _).") var kind: String?
        @Option(help: "The dataset the event is about.") var dataset: String?
        @Option(help: "SHA-256 of the event's payload, hex.") var payloadHash: String?
        @Option(help: ArgumentHelp("Append every event of a JSON-lines file (- for stdin).", valueName: "file")) var batch: String?
        func run() throws {
            try guarded {
                var events = [(String, String?, [UInt8])]()
                if let batch {
                    let data = batch == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: batch)
                    guard let data else { throw Failure(description: "cannot read \(batch)", exitCode: Failure.noInput) }
                    for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() where !line.isEmpty {
                        guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                              let k = o["kind"] as? String, let h = o["payload_hash"] as? String else {
                            throw Failure(description: "\(batch) line \(n + 1): expected {\"kind\":…, \"payload_hash\":…}", exitCode: Failure.usage)
                        }
                        events.append((k, o["dataset"] as? String, try hash32(h, "payload_hash")))
                    }
                } else {
                    guard let kind, let payloadHash else { throw Failure(description: "give --kind and --payload-hash, or --batch FILE", exitCode: Failure.usage) }
                    events.append((kind, dataset, try hash32(payloadHash, "--payload-hash")))
                }
                let l = try ledger.engine(writable: true), key = try signer.load()
                var last: UInt64 = 0
                for (k, d, h) in events { last = try l.submit(.audit(event: k, dataset: d, payloadHash: h), signer: key).index }
                print(events.count == 1 ? "entry \(last)" : "\(events.count) events appended; last entry \(last)")
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Summarise the ledger, a dataset, or whether USER holds an active rental of DATASET.",
            discussion: "With --dataset and --user: prints the rental and exits 0 when one is active at --at (default now), exits 1 when none is.")
        @OptionGroup var ledger: LedgerOptions
        @Option(help: "A dataset id.") var dataset: String?
        @Option(help: "A consumer address (with --dataset).") var user: String?
        @Option(help: "The time to judge rentals at: RFC 3339 or Unix seconds (default now).") var at: String?
        func run() throws {
            try guarded {
                let t = try at.map(parseTime) ?? UInt64(Date().timeIntervalSince1970)
                if ledger.isChain {
                    let l = try ledger.engine()
                    guard let dataset else { print("ledger \(l.origin): an EVM chain (\((l as? EVMLedger)?.location.text ?? ""))"); return }
                    guard let rec = l.dataset(dataset) else {
                        try throwIfChainFailed(l)
                        throw Failure(description: "dataset '\(dataset)' is not registered in this ledger", exitCode: Failure.noInput)
                    }
                    if let user {
                        let u = try Address(user)
                        guard let r = l.activeRental(dataset: dataset, user: u, at: t) else {
                            try throwIfChainFailed(l)
                            print("no active rental of \(dataset) by \(u) at \(formatTime(t)) (and at the chain's \((l as? EVMLedger)?.location.block ?? "") block)")
                            throw ExitCode(1)
                        }
                        print("active: rental \(r.id) of \(dataset) by \(u) until \(formatTime(r.history.last?.expires ?? 0))")
                        return
                    }
                    print("dataset \(rec.id): owner \(rec.owner), policy \(Hex.encode(rec.policyHash))")
                    for v in rec.versions { print("  version \(Hex.encode(v.root))") }
                    return
                }
                let l = try ledger.open()
                let s = l.state
                guard let dataset else {
                    let cp = l.checkpoint()
                    print("ledger \(l.origin): \(l.count) entries, \(s.datasets.count) datasets, \(s.rentals.count) rentals; root \(Data(cp.root).base64EncodedString())")
                    return
                }
                guard let rec = s.datasets[dataset] else { throw Failure(description: "dataset '\(dataset)' is not registered in this ledger", exitCode: Failure.noInput) }
                if let user {
                    let u = try Address(user)
                    guard let r = s.activeRental(dataset: dataset, user: u, at: t) else {
                        print("no active rental of \(dataset) by \(u) at \(formatTime(t))")
                        throw ExitCode(1)
                    }
                    print("active: rental \(r.id) of \(dataset) by \(u) until \(formatTime(r.userExpires(at: t)))")
                    return
                }
                print("dataset \(rec.id): owner \(rec.owner), policy \(Hex.encode(rec.policyHash))")
                for v in rec.versions { print("  version \(Hex.encode(v.root)) (entry \(v.entry))") }
                for r in s.rentals.values.filter({ $0.dataset == dataset }).sorted(by: { $0.id < $1.id }) {
                    let u = r.userOf(at: t)
                    print("  rental \(r.id): " + (u == .zero ? "inactive" : "\(u) until \(formatTime(r.userExpires(at: t)))"))
                }
            }
        }
    }

    struct Events: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List events, filtered by dataset, actor and kind.")
        @OptionGroup var ledger: LedgerOptions
        @Option(help: "Only events about this dataset.") var dataset: String?
        @Option(help: "Only events by this address.") var actor: String?
        @Option(help: "Only events of this kind (dataset.register, dataset.version, rental.set, rental.end, or an audit kind).") var kind: String?
        @Flag(help: "One JSON object per line.") var json = false
        func run() throws {
            try guarded {
                let l = try ledger.engine()
                let f = EventFilter(dataset: dataset, actor: try actor.map { try Address($0) }, kind: kind)
                let events = l.events(matching: f)
                try throwIfChainFailed(l)
                for e in events {
                    var detail = ""
                    switch e.operation {
                    case .registerDataset(_, let p, let o): detail = "policy=\(Hex.encode(p)) owner=\(o)"
                    case .approveOperator(let a): detail = "owner=\(a.owner) operator=\(a.operator) expires=\(a.expires) nonce=\(a.nonce)"
                    case .registerVersion(_, let r): detail = "root=\(Hex.encode(r))"
                    case .setRental(_, let id, let u, let x): detail = "rental=\(id) user=\(u) expires=\(x)"
                    case .endRental(_, let id): detail = "rental=\(id)"
                    case .audit(_, _, let h): detail = "payload=\(Hex.encode(h))"
                    }
                    if json {
                        var o: [String: Any] = ["index": e.index, "time": e.time, "kind": e.kind, "actor": e.actor.checksummed, "detail": detail]
                        if let d = e.dataset { o["dataset"] = d }
                        print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
                    } else {
                        print("\(e.index)\t\(formatTime(e.time))\t\(e.kind)\t\(e.actor)\t\(e.dataset ?? "-")\t\(detail)")
                    }
                }
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay the whole ledger: framing, hashes, chain, signatures and rules. Names the first bad entry (exit 65).",
            discussion: "With --checkpoint, also checks the file still holds the checkpoint's tree (nothing dropped or rewritten).")
        @OptionGroup var ledger: LedgerOptions
        @Option(help: ArgumentHelp("A signed checkpoint the file must be consistent with.", valueName: "file")) var checkpoint: String?
        @Option(help: "The address that must have signed the checkpoint (required with --checkpoint).") var signer: String?
        func run() throws {
            try guarded {
                var expected: Checkpoint?
                if let checkpoint {
                    guard let signer else {
                        throw Failure(description: "--checkpoint needs --signer ADDRESS: a checkpoint is worth what its signer is (anyone can sign one)", exitCode: Failure.usage)
                    }
                    expected = try readCheckpoint(checkpoint, signer: signer)
                }
                let r = try EmbeddedLedger.verify(path: try ledger.filePath, against: expected)
                if r.incompleteTailBytes > 0 {
                    throw Failure(description: "entry \(r.entries) is incomplete (\(r.incompleteTailBytes) bytes; torn by a crash mid-append): `cce4 ledger repair` drops it", exitCode: Failure.dataError)
                }
                print("OK: \(r.entries) entries verified; root \(Data(r.checkpoint.root).base64EncodedString())" + (expected.map { "; consistent with checkpoint at \($0.size)" } ?? ""))
            }
        }
    }

    struct Checkpoint_: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "checkpoint", abstract: "Print a signed checkpoint (C2SP tlog-checkpoint note) of the ledger as it is now.")
        @OptionGroup var ledger: LedgerOptions
        @OptionGroup var signer: SignerOptions
        func run() throws {
            try guarded { print(try ledger.open().checkpoint().signed(by: try signer.load()), terminator: "") }
        }
    }

    struct Prove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print an inclusion proof (--entry N) or a consistency proof (--old CHECKPOINT) as JSON.",
            discussion: "Proofs are against --checkpoint's tree (default: the ledger now). Check them with `cce4 ledger check-proof`, which needs no ledger.")
        @OptionGroup var ledger: LedgerOptions
        @Option(help: "The entry to prove included.") var entry: UInt64?
        @Option(help: ArgumentHelp("An older signed checkpoint to prove the log grew from.", valueName: "file")) var old: String?
        @Option(help: ArgumentHelp("The signed checkpoint to prove against (default: the current tree).", valueName: "file")) var checkpoint: String?
        func run() throws {
            try guarded {
                let l = try ledger.open()
                var size = l.count
                if let checkpoint {
                    let cp = try readCheckpoint(checkpoint, signer: nil)
                    guard cp.origin == l.origin else { throw Failure(description: "the checkpoint is of \(cp.origin), this ledger is \(l.origin)", exitCode: Failure.dataError) }
                    guard cp.size <= l.count else { throw Failure(description: "the checkpoint has \(cp.size) entries; this ledger only \(l.count) (entries were dropped?)", exitCode: Failure.dataError) }
                    size = cp.size
                }
                var out: [String: Any] = ["tree_size": size, "root": Data(l.tree.root(size: size)).base64EncodedString()]
                switch (entry, old) {
                case (let i?, nil):
                    guard i < size else { throw Failure(description: "entry \(i) is not among the \(size) entries of the tree", exitCode: Failure.usage) }
                    out["type"] = "inclusion"; out["leaf_index"] = i
                    out["leaf_hash"] = Hex.encode(l.tree.leafHash(i))
                    out["entry"] = Hex.encode(try l.entry(i).body)
                    out["path"] = try l.tree.inclusionProof(index: i, size: size).map { Hex.encode($0) }
                case (nil, let o?):
                    let oldCP = try readCheckpoint(o, signer: nil)
                    guard oldCP.origin == l.origin else { throw Failure(description: "the old checkpoint is of \(oldCP.origin), this ledger is \(l.origin)", exitCode: Failure.dataError) }
                    out["type"] = "consistency"; out["old_size"] = oldCP.size
                    out["path"] = try l.tree.consistencyProof(oldSize: oldCP.size, newSize: size).map { Hex.encode($0) }
                default: throw Failure(description: "give --entry N or --old CHECKPOINT", exitCode: Failure.usage)
                }
                print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
            }
        }
    }

    struct CheckProof: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-proof",
            abstract: "Check a proof from `prove` against signed checkpoints, offline (no ledger file needed).")
        @Option(help: ArgumentHelp("The proof JSON.", valueName: "file")) var proof: String
        @Option(help: ArgumentHelp("The signed checkpoint the proof is against.", valueName: "file")) var checkpoint: String
        @Option(help: ArgumentHelp("For a consistency proof: the older signed checkpoint.", valueName: "file")) var old: String?
        @Option(help: "The address that must have signed the checkpoints: the log operator you trust.") var signer: String
        func run() throws {
            try guarded {
                guard let d = FileManager.default.contents(atPath: proof),
                      let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
                      let pathHex = o["path"] as? [String] else { throw Failure(description: "\(proof) is not a proof from `cce4 ledger prove`", exitCode: Failure.dataError) }
                let path = try pathHex.map { h -> [UInt8] in
                    guard let b = Hex.decode(h), b.count == 32 else { throw Failure(description: "proof hash is not 32 bytes of hex", exitCode: Failure.dataError) }
                    return b
                }
                let cp = try readCheckpoint(checkpoint, signer: signer)
                switch o["type"] as? String {
                case "inclusion":
                    guard let i = (o["leaf_index"] as? NSNumber)?.uint64Value, let eh = o["entry"] as? String, let entry = Hex.decode(eh) else {
                        throw Failure(description: "inclusion proof without leaf_index and entry", exitCode: Failure.dataError)
                    }
                    try Merkle.verifyInclusion(leafHash: Merkle.leafHash(entry), index: i, size: cp.size, path: path, root: cp.root)
                    print("OK: entry \(i) is in the log \(cp.origin) of \(cp.size) entries")
                case "consistency":
                    guard let o2 = old else { throw Failure(description: "a consistency proof needs --old CHECKPOINT", exitCode: Failure.usage) }
                    let oldCP = try readCheckpoint(o2, signer: signer)
                    guard oldCP.origin == cp.origin else { throw Failure(description: "the checkpoints are of different logs", exitCode: Failure.dataError) }
                    try Merkle.verifyConsistency(oldSize: oldCP.size, oldRoot: oldCP.root, newSize: cp.size, newRoot: cp.root, path: path)
                    print("OK: the log \(cp.origin) grew from \(oldCP.size) to \(cp.size) entries without changing any")
                default: throw Failure(description: "unknown proof type", exitCode: Failure.dataError)
                }
            }
        }
    }

    struct Repair: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop a torn last entry left by a crash mid-append (the bytes are kept beside the file), then verify.")
        @OptionGroup var ledger: LedgerOptions
        func run() throws {
            try guarded {
                let l = try ledger.open(writable: true)
                print("OK: \(l.count) complete entries")
            }
        }
    }
}

func readCheckpoint(_ file: String, signer: String?) throws -> Checkpoint {
    guard let d = FileManager.default.contents(atPath: file) else { throw Failure(description: "cannot read checkpoint \(file)", exitCode: Failure.noInput) }
    return try Checkpoint.open(String(decoding: d, as: UTF8.self), trusted: try signer.map { try Address($0) }).0
}

/// The end of a rental or approval from `--until TIME` (RFC 3339 or Unix seconds) or `--for
/// DURATION` from now, exactly one of them; at most Int64.max (what JSON and the chain carry).
func endTime(until: String?, duration: String?) throws -> UInt64 {
    switch (until, duration) {
    case (let u?, nil): return try parseTime(u)
    case (nil, let d?):
        let (x, overflow) = UInt64(Date().timeIntervalSince1970).addingReportingOverflow(try parseDuration(d))
        guard !overflow, x <= UInt64(Int64.max) else { throw Failure(description: "--for \(d) is too long", exitCode: Failure.usage) }
        return x
    default: throw Failure(description: "give the end once: --until TIME or --for DURATION", exitCode: Failure.usage)
    }
}

func parseDuration(_ s: String) throws -> UInt64 {
    let units: [Character: UInt64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    guard let u = s.last, let mul = units[u], let n = UInt64(s.dropLast()), n > 0 else {
        throw Failure(description: "'\(s)' is not a duration: use a number and s, m, h or d (e.g. 30d)", exitCode: Failure.usage)
    }
    let (v, overflow) = n.multipliedReportingOverflow(by: mul)
    guard !overflow else { throw Failure(description: "'\(s)' is too long a duration", exitCode: Failure.usage) }
    return v
}
