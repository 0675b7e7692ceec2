// The plane's operations, independent of HTTP: each takes the signed-in caller, checks it
// may act, works on the store and the ledger, and records what it did on the ledger. Calls
// block (store and ledger I/O, encryption); the HTTP layer runs them off the event loop.
import Dataset
import Envelope
import Foundation
import Ledger
import Logging
import ObjectStore
import Synchronization
import Wallet

/// The ledger, shared by request threads: one engine behind a lock. Reads pick up what other
/// replicas appended first (`refresh`), so two planes on one ledger agree.
final class LedgerAccess: @unchecked Sendable {
    // Lock order: this lock alone; held across ledger I/O (the ledger file serializes appends anyway).
    private let lock = NSLock()
    private let engine: any LedgerEngine

    init(_ engine: any LedgerEngine) { self.engine = engine }

    func read<R>(_ body: (any LedgerEngine) throws -> R) throws -> R {
        lock.lock(); defer { lock.unlock() }
        do { try engine.refresh() } catch { throw PlaneError.unavailable("the ledger cannot be read: \(error)") }
        return try body(engine)
    }

    func submit(_ op: Ledger.Operation, signer: PrivateKey) throws -> Event {
        lock.lock(); defer { lock.unlock() }
        do throws(LedgerError) { return try engine.submit(op, signer: signer) } catch {
            switch error {
            case .refused(let why): throw PlaneError.conflict(why)
            case .invalidArgument(let why): throw PlaneError.unprocessable(why)
            default: throw PlaneError.unavailable("the ledger cannot record this: \(error)")
            }
        }
    }
}

/// A version as the API lists it.
public struct VersionInfo: Codable, Sendable, Equatable {
    public let root: String
    public let files: Int
    public let bytes: Int64
    public let createdAt: UInt64
}

/// A dataset as the API shows it.
public struct DatasetInfo: Codable, Sendable, Equatable {
    public let id: String
    public let owner: String
    public let policyHash: String
    public let versions: [VersionInfo]
}

/// The plane's own record of a version, beside the dataset: which key encrypted it. The store
/// is untrusted, so the record carries a MAC under a KEK-derived key over all its fields.
struct VersionMeta: Codable {
    var format = 1
    let dataset: String
    let root: String
    let files: Int
    let bytes: Int64
    let createdAt: UInt64
    let key: UInt32
    var mac: String = ""

    /// "cce4-version-meta-v1|dataset|root|files|bytes|createdAt|key".
    var macInput: [UInt8] { Array("cce4-version-meta-v1|\(dataset)|\(root)|\(files)|\(bytes)|\(createdAt)|\(key)".utf8) }
}

/// The Privacy Plane: keys, sign-in, datasets, rentals and audit.
public final class PlaneService: Sendable {
    public let config: PlaneConfig
    public let keys: PlaneKeys
    public let store: any ObjectStore
    let ledger: LedgerAccess
    let deks: DEKStore
    let logger: Logger
    /// host:port clients use (set once the port is bound).
    let authority: Mutex<String>

    /// The plane's identity (same on every replica with the same KEK).
    public var identity: PrivateKey { keys.identity }

    public init(config: PlaneConfig, keys: PlaneKeys, store: any ObjectStore, ledger: any LedgerEngine, logger: Logger) {
        self.config = config; self.keys = keys; self.store = store; self.ledger = LedgerAccess(ledger); self.logger = logger
        deks = DEKStore(store: store, keys: keys)
        authority = Mutex(config.publicAuthority ?? "\(config.host):\(config.port)")
    }

    static func now() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970)) }

    var authenticator: Authenticator {
        let a = authority.withLock { $0 }
        return Authenticator(keys: keys, store: store, domain: a, uri: "\(config.publicScheme)://\(a)", chainID: config.chainID,
                             tokenTTL: config.tokenTTL, nonceTTL: config.nonceTTL)
    }

    // MARK: keys (public API for key release)

    /// The DEK that encrypted version `root` of `dataset`, unwrapped from the store.
    public func datasetKey(dataset: String, root: String) throws -> SecureBytes {
        let meta = try versionMeta(dataset, root)
        return try deks.dek(dataset, meta.key)
    }

    /// Makes a new DEK for `dataset`, stored wrapped, and records its number on the ledger
    /// (`plane.key.rotate`, payload hash = SHA-256("cce4-plane-key-v1|" ‖ dataset ‖ "|" ‖ n)); later
    /// versions are encrypted with it. Keys the ledger does not name are never used, so the
    /// untrusted store cannot roll rotation back by deleting the newest key.
    @discardableResult
    public func rotateKey(dataset: String) throws -> UInt32 {
        let n = try deks.rotate(dataset)
        _ = try ledger.submit(.audit(event: "plane.key.rotate", dataset: dataset, payloadHash: Self.keyEventHash(dataset, n)), signer: identity)
        return n
    }

    static func keyEventHash(_ dataset: String, _ n: UInt32) -> [UInt8] { SHA256Digest.hash(Array("cce4-plane-key-v1|\(dataset)|\(n)".utf8)).bytes }

    /// The newest key number the ledger records for `dataset` (nil: none yet).
    func currentKey(_ dataset: String) throws -> UInt32? {
        let recorded = Set(try ledger.read { l in
            l.events(matching: EventFilter(dataset: dataset, kind: "plane.key.rotate")).compactMap { e -> [UInt8]? in
                if case .audit(_, _, let h) = e.operation { return h } else { return nil }
            }
        })
        guard !recorded.isEmpty else { return nil }
        // Candidates: the numbers the store holds and the first few (keys are numbered densely);
        // bounded work whatever an untrusted store lists.
        var candidates = Set(try deks.numbers(dataset))
        for i in 1...UInt32(min(recorded.count + 64, 1 << 20)) { candidates.insert(i) }
        return candidates.sorted(by: >).first { recorded.contains(Self.keyEventHash(dataset, $0)) }
    }

    /// The current key's number and DEK (making key 1 if the ledger records none).
    func currentDEK(_ dataset: String) throws -> (UInt32, SecureBytes) {
        let n = try currentKey(dataset) ?? rotateKey(dataset: dataset)
        do { return (n, try deks.dek(dataset, n)) } catch PlaneError.notFound {
            throw PlaneError.unavailable("key \(n) of '\(dataset)', which the ledger names as current, is missing from the store")
        }
    }

    // MARK: helpers

    func validID(_ id: String) throws(PlaneError) {
        do { try AssociatedData.validateDatasetID(id) } catch { throw .unprocessable("dataset id: \(error)") }
    }

    static func hash32(_ hex: String, _ what: String) throws(PlaneError) -> [UInt8] {
        guard hex.utf8.count == 64, let b = Hex.decode(hex), hex == hex.lowercased() else { throw .unprocessable("\(what) must be 64 lowercase hex digits") }
        return b
    }

    func versionMetaKey(_ dataset: String, _ root: String) throws -> ObjectKey { try ObjectKey("\(dataset)/plane/versions/\(root)") }

    func readJSON<T: Decodable>(_ key: ObjectKey, _ t: T.Type) throws -> T? {
        do {
            let b = try store.get(key).bytes
            return try JSONDecoder().decode(T.self, from: Data(b))
        } catch let e as ObjectStoreError where e.code == .notFound { return nil }
    }

    func writeJSON<T: Encodable>(_ key: ObjectKey, _ v: T, ifAbsent: Bool) throws {
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
        try store.put(key, Array(try enc.encode(v)) + [0x0a], ifAbsent: ifAbsent)
    }

    func versionMeta(_ dataset: String, _ root: String) throws -> VersionMeta {
        try validID(dataset)
        _ = try Self.hash32(root, "root")
        guard let m = try readVersionMeta(dataset, root) else {
            throw PlaneError.notFound("dataset '\(dataset)' has no version \(root)")
        }
        return m
    }

    /// The version's record if present and authentic (its MAC verifies and it names this
    /// dataset and root); a forged or altered record fails closed.
    func readVersionMeta(_ dataset: String, _ root: String) throws -> VersionMeta? {
        guard let m = try readJSON(try versionMetaKey(dataset, root), VersionMeta.self) else { return nil }
        let want = Array(Hex.encode(try keys.metaMAC(m.macInput)).utf8), got = Array(m.mac.utf8)
        let ok = want.withUnsafeBytes { a in got.withUnsafeBytes { b in constantTimeEquals(a, b) } }
        guard ok, m.dataset == dataset, m.root == root, m.format == 1 else {
            logger.error("a version record in the store does not authenticate", metadata: ["dataset": "\(dataset)", "root": "\(root)"])
            throw PlaneError.unavailable("the record of version \(root) of '\(dataset)' was altered in the store")
        }
        return m
    }

    /// The dataset's ledger record and its owner.
    func record(_ id: String) throws -> (DatasetRecord, Address) {
        try validID(id)
        guard let rec = try ledger.read({ $0.dataset(id) }) else { throw PlaneError.notFound("no dataset '\(id)'") }
        return (rec, rec.owner)
    }

    /// Fails with operator-approval-required unless `owner` has approved the plane to act for it now.
    func requireApproval(_ owner: Address) throws {
        let ok = try ledger.read { $0.isOperator(identity.address, of: owner, at: Self.now()) }
        guard ok else {
            throw PlaneError.operatorApprovalRequired("approve the plane (\(identity.address.checksummed)) as your ledger operator first: GET then POST /v1/auth/operator-approval")
        }
    }

    /// The record of a dataset `caller` owns; with `approval`, also checks the plane may act
    /// for the owner on the ledger.
    func requireOwner(_ id: String, _ caller: Address, approval: Bool = false) throws -> DatasetRecord {
        let (rec, owner) = try record(id)
        guard owner == caller else { throw PlaneError.forbidden("only the owner of '\(id)' (\(owner.checksummed)) may do this; you are \(caller.checksummed)") }
        if approval { try requireApproval(owner) }
        return rec
    }

    /// Records an audit event about a call: the payload (who, what) is kept in the store beside
    /// the dataset, its SHA-256 on the ledger.
    func audit(_ event: String, dataset: String, caller: Address, details: [String: String]) throws {
        var fields = details
        fields["caller"] = caller.checksummed; fields["event"] = event; fields["dataset"] = dataset; fields["time"] = String(Self.now())
        let payload = Array(try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]))
        let hash = SHA256Digest.hash(payload)
        try store.put(try ObjectKey("\(dataset)/plane/audit/\(hash.hex)"), payload, ifAbsent: false)
        _ = try ledger.submit(.audit(event: event, dataset: dataset, payloadHash: hash.bytes), signer: identity)
    }

    // MARK: datasets

    public func createDataset(caller: Address, id: String, policyHash: String?) throws -> DatasetInfo {
        try validID(id)
        let policy = try policyHash.map { h throws(PlaneError) in try Self.hash32(h, "policyHash") } ?? [UInt8](repeating: 0, count: 32)
        if try ledger.read({ $0.dataset(id) }) != nil { throw PlaneError.conflict("dataset '\(id)' already exists") }
        try requireApproval(caller)
        // The ledger serializes creation: of two replicas creating one id, one is refused.
        _ = try ledger.submit(.registerDataset(dataset: id, policyHash: policy, owner: caller), signer: identity)
        // Key 1 now (or, should this fail, at the first upload).
        try rotateKey(dataset: id)
        try audit("plane.dataset.create", dataset: id, caller: caller, details: [:])
        return DatasetInfo(id: id, owner: caller.checksummed, policyHash: Hex.encode(policy), versions: [])
    }

    public func dataset(_ id: String) throws -> DatasetInfo {
        let (rec, owner) = try record(id)
        return DatasetInfo(id: id, owner: owner.checksummed, policyHash: Hex.encode(rec.policyHash), versions: try versions(rec))
    }

    public func versions(_ id: String) throws -> [VersionInfo] { try versions(try record(id).0) }

    /// Versions the ledger names whose objects are still in the store (deleted ones are not listed).
    func versions(_ rec: DatasetRecord) throws -> [VersionInfo] {
        try rec.versions.compactMap { v in
            guard let m = try readVersionMeta(rec.id, Hex.encode(v.root)) else { return nil }
            return VersionInfo(root: m.root, files: m.files, bytes: m.bytes, createdAt: m.createdAt)
        }
    }

    /// Encrypts an uploaded tar stream as a new version. `pack` runs the packer with the
    /// dataset's current DEK; the version is recorded on the ledger once every object is stored.
    public func upload(caller: Address, id: String, pack: (Packer) throws -> PackResult) throws -> VersionInfo {
        _ = try requireOwner(id, caller, approval: true)
        let (n, dek) = try currentDEK(id)
        let packer = try Packer(store: store, datasetID: id, key: dek)
        let result = try pack(packer)
        let root = result.root.hex
        var meta = VersionMeta(dataset: id, root: root, files: result.files, bytes: result.plaintextBytes, createdAt: Self.now(), key: n)
        meta.mac = Hex.encode(try keys.metaMAC(meta.macInput))
        do { try writeJSON(try versionMetaKey(id, root), meta, ifAbsent: true) } catch let e as ObjectStoreError where e.code == .alreadyExists {
            throw PlaneError.conflict("dataset '\(id)' already has version \(root) (the same content)")
        }
        do {
            _ = try ledger.submit(.registerVersion(dataset: id, root: result.root.bytes), signer: identity)
        } catch {
            try? store.delete(try versionMetaKey(id, root))
            throw error
        }
        try audit("plane.version.upload", dataset: id, caller: caller, details: ["root": root, "key": String(n)])
        return VersionInfo(root: root, files: meta.files, bytes: meta.bytes, createdAt: meta.createdAt)
    }

    /// Deletes a version's objects from the store (the ledger keeps its history) and records it.
    public func deleteVersion(caller: Address, id: String, root: String) throws {
        _ = try requireOwner(id, caller)
        let meta = try versionMeta(id, root)
        let digest = try SHA256Digest(hex: root)
        let reader = try DatasetReader(store: store, datasetID: id, root: digest, key: try deks.dek(id, meta.key))
        let layout = try DatasetLayout(datasetID: id)
        var keys = [ObjectKey]()
        var stack = [digest]
        while let h = stack.popLast() {
            keys.append(try layout.directoryKey(h))
            let listing = try reader.directory(h)
            for e in try listing.validateAll() {
                switch e.target {
                case .directory(let d): stack.append(d.hash)
                case .file(let f): for p in f.parts { keys.append(try layout.storeKey(p.key)) }
                case .symlink: break
                }
            }
        }
        // The plane's record goes first: once it is gone the version is no longer listed or
        // served, even if removing the objects is interrupted.
        try store.delete(try versionMetaKey(id, root))
        for k in keys { try store.delete(k) }
        try store.delete(try layout.versionKey(digest))
        try audit("plane.version.delete", dataset: id, caller: caller, details: ["root": root, "objects": String(keys.count)])
    }

    /// `POST /v1/datasets/{id}/keys`: the owner rotates the dataset's DEK.
    public func rotate(caller: Address, id: String) throws -> UInt32 {
        _ = try requireOwner(id, caller)
        let n = try rotateKey(dataset: id)
        try audit("plane.key.rotate.request", dataset: id, caller: caller, details: ["key": String(n)])
        return n
    }

    // MARK: operator approval

    /// The EIP-712 typed data (eth_signTypedData_v4) the caller signs to approve the plane as
    /// its ledger operator until `expires`.
    public func approvalRequest(caller: Address, expires: UInt64? = nil) throws -> String {
        let (domain, nonce) = try ledger.read { ($0.approvalDomain, $0.approvalNonce(of: caller) + 1) }
        return OperatorApproval.typedDataJSON(owner: caller, operator: identity.address, expires: expires ?? Self.now() + 30 * 86400, nonce: nonce, domain: domain)
    }

    /// Records the caller's signed approval of the plane on the ledger (`expires` 0 revokes).
    public func approveOperator(caller: Address, expires: UInt64, nonce: UInt64, signature: Signature) throws {
        let approval = OperatorApproval(owner: caller, operator: identity.address, expires: expires, nonce: nonce, signature: signature)
        let domain = try ledger.read { $0.approvalDomain }
        do throws(LedgerError) { try approval.verify(domain: domain) } catch {
            throw PlaneError.unprocessable("the approval's signature is not yours over this ledger's domain (sign the typed data from GET /v1/auth/operator-approval)")
        }
        _ = try ledger.submit(.approveOperator(approval), signer: identity)
    }

    // MARK: rentals

    public struct RentalGrant: Codable, Sendable { public let rentalId: UInt64; public let user: String; public let expires: UInt64 }
    public struct RentalStatus: Codable, Sendable { public let active: Bool; public let rentalId: UInt64?; public let expires: UInt64? }

    public func grantRental(caller: Address, id: String, user: Address, expires: UInt64) throws -> RentalGrant {
        _ = try requireOwner(id, caller, approval: true)
        guard user != .zero else { throw PlaneError.unprocessable("user cannot be the zero address") }
        guard expires > Self.now() else { throw PlaneError.unprocessable("expires (\(expires)) must be in the future") }
        let ev = try ledger.submit(.setRental(dataset: id, rentalID: 0, user: user, expires: expires), signer: identity)
        guard case .setRental(_, let rid, _, _) = ev.operation else { throw PlaneError.internalError("ledger returned another event") }
        try audit("plane.rental.grant", dataset: id, caller: caller, details: ["rental": String(rid), "user": user.checksummed, "expires": String(expires)])
        return RentalGrant(rentalId: rid, user: user.checksummed, expires: expires)
    }

    public func endRental(caller: Address, id: String, rentalID: UInt64) throws {
        _ = try requireOwner(id, caller, approval: true)
        let exists = try ledger.read { l in l.events(matching: EventFilter(dataset: id, kind: EntryKind.rentalSet.name)).contains { e in
            if case .setRental(_, let r, _, _) = e.operation { return r == rentalID } else { return false }
        } }
        guard exists else { throw PlaneError.notFound("dataset '\(id)' has no rental \(rentalID)") }
        _ = try ledger.submit(.endRental(dataset: id, rentalID: rentalID), signer: identity)
        try audit("plane.rental.end", dataset: id, caller: caller, details: ["rental": String(rentalID)])
    }

    public func rentalStatus(id: String, user: Address) throws -> RentalStatus {
        _ = try record(id)
        let now = Self.now()
        guard let r = try ledger.read({ $0.activeRental(dataset: id, user: user, at: now) }) else { return RentalStatus(active: false, rentalId: nil, expires: nil) }
        return RentalStatus(active: true, rentalId: r.id, expires: r.userExpires(at: now))
    }

    // MARK: audit

    public struct AuditEvent: Codable, Sendable {
        public let index: UInt64
        public let time: UInt64
        public let actor: String
        public let kind: String
        public let event: String
        public let dataset: String?
        public let payloadHash: String?
        public let leafHash: String
        /// The entry's body (hex): what the leaf hash is the hash of (`cce4 ledger check-proof` needs it).
        public let entry: String
        public let proof: [String]
    }
    public struct AuditTrail: Codable, Sendable { public let checkpoint: String; public let events: [AuditEvent] }

    /// Every ledger event about `dataset`, each with an inclusion proof against a checkpoint
    /// the plane signs now.
    public func auditTrail(dataset id: String) throws -> AuditTrail {
        _ = try record(id)
        return try ledger.read { l in
            guard let emb = l as? EmbeddedLedger else { throw PlaneError.unavailable("audit proofs need the embedded ledger") }
            let cp = emb.checkpoint()
            let note: String
            do { note = try cp.signed(by: identity) } catch { throw PlaneError.internalError("checkpoint signing failed") }
            let events = try l.events(matching: EventFilter(dataset: id)).filter { $0.index < cp.size }.map { ev in
                let entry = try emb.entry(ev.index)
                var payload: String?
                if case .audit(_, _, let p) = ev.operation { payload = Hex.encode(p) }
                return AuditEvent(index: ev.index, time: ev.time, actor: ev.actor.checksummed, kind: ev.operation.kind.name, event: ev.kind,
                                  dataset: ev.dataset, payloadHash: payload, leafHash: Hex.encode(entry.leafHash), entry: Hex.encode(entry.body),
                                  proof: try emb.tree.inclusionProof(index: ev.index, size: cp.size).map { Hex.encode($0) })
            }
            return AuditTrail(checkpoint: note, events: events)
        }
    }
}
