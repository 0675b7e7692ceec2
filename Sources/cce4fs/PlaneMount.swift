// Mounting through the Privacy Plane (docs/key-release.md §cce4fs): the key arrives by attested
// key release before the mount goes live, a lease gates every open and read, a background
// thread renews it, and the access log's Merkle root goes to the plane at unmount.
import Attestation
import CurlHTTP
import Dataset
import Envelope
import Filesystem
import Foundation
import KeyRelease
import Logging
import Synchronization
import Wallet
#if canImport(Glibc)
import Glibc
#endif

/// The -o options of a plane mount.
struct PlaneOptions {
    var url: String?
    var credential: String?
    var attest: String?
    var identity: String?
    /// A local cap on the lease, in seconds (shorter than the plane's: renew more often, see a
    /// revocation sooner).
    var leaseTTL: UInt64?
    /// The simulated provider's 96-byte key file (`cce4 attest simulate --key-file`); default a fresh key.
    var simulatedKeyFile: String?
    var caFile: String?

    var isSet: Bool { url != nil || credential != nil || attest != nil || identity != nil }
}

/// Exit statuses of a failed release: 77 the plane refused (its reason is printed); 69 the
/// plane or the TEE could not be reached; 65 the plane's answer failed a check (tampered key,
/// another identity); 64 bad options or credential.
enum ReleaseExit {
    static func status(_ e: KeyReleaseError) -> Int32 {
        switch e.code {
        case .tamperedKey, .planeIdentity: return ExitStatus.dataError
        case .transport, .ledgerUnavailable, .internalFailure, .keyUnavailable: return ExitStatus.unavailable
        case .evidenceInvalid where e.status == 0: return ExitStatus.unavailable
        case .malformed where e.status == 400: return ExitStatus.usage
        default: return ExitStatus.noPermission
        }
    }
}

/// A mount's lease: the gate, the renewal thread, the access log.
final class PlaneMount: @unchecked Sendable {
    let client: KeyReleaseClient
    let gate: LeaseGate
    let log: AccessLog
    private let lease: Mutex<Lease>
    private let localTTL: UInt64?
    private let logger: Logger
    private let stop = DispatchSemaphore(value: 0)
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    /// Runs the release; on failure prints the plane's reason and exits with `ReleaseExit`.
    static func release(_ o: PlaneOptions, dataset: String, root: SHA256Digest, logger: Logger) -> (key: SecureBytes, mount: PlaneMount) {
        func die(_ m: String, _ s: Int32) -> Never {
            writeStandardError("cce4fs: error: \(m)\n")
            exit(s)
        }
        guard let url = o.url, let credPath = o.credential, let attest = o.attest, let id = o.identity else {
            die("a plane mount needs plane=URL, credential=FILE, attest=tsm|simulated and plane_identity=0xADDRESS", ExitStatus.usage)
        }
        guard url.hasPrefix("https://") || url.hasPrefix("http://127.") || url.hasPrefix("http://localhost") || url.hasPrefix("http://[::1]") else {
            die("plane=\(url): use https:// (plain http only to a loopback plane, for tests)", ExitStatus.usage)
        }
        guard let identity = try? Address(id) else { die("plane_identity=\(id) is not an address (0x and 40 hex digits)", ExitStatus.usage) }
        guard let data = FileManager.default.contents(atPath: credPath) else { die("cannot read the credential file \(credPath)", 66) }
        let credential: JobCredential
        do { credential = try JSONDecoder().decode(JobCredential.self, from: data) } catch {
            die("\(credPath) is not a Job Credential (make one with `cce4 job credential`): \(error)", ExitStatus.usage)
        }
        guard let version = credential.datasets.first(where: { $0.id == dataset }), version.root == root else {
            die("the credential does not name dataset \(dataset) at root \(root.hex)", ExitStatus.usage)
        }
        let provider: any EvidenceProvider
        switch attest {
        case "tsm": provider = ConfigfsTSMProvider()
        case "simulated":
            do {
                let key: SimulatedKey
                if let f = o.simulatedKeyFile {
                    guard let b = FileManager.default.contents(atPath: f) else { die("cannot read sim_key=\(f): no such file, or not readable by this user", ExitStatus.noInput) }
                    key = try SimulatedKey(fileBytes: Array(b))
                } else { key = try SimulatedKey() }
                provider = try SimulatedProvider(key: key, measurement: credential.measurementBytes)
            } catch { die("simulated attestation: \(error)", ExitStatus.usage) }
            logger.warning("SIMULATED attestation: no hardware vouches for this mount; the plane must allow simulated evidence")
        default: die("attest=\(attest): use tsm (configfs-tsm, in a TDX or SEV-SNP guest) or simulated", ExitStatus.usage)
        }
        var options = HTTPClientOptions()
        options.caFile = o.caFile
        options.maxAttempts = 3
        options.retryTime = 15
        options.maxResponseBytes = 1 << 20
        let client = KeyReleaseClient(transport: Self.transport(base: url, http: CurlClient(options: options)), planeIdentity: identity)
        let released: ReleasedKeys
        do throws(KeyReleaseError) { released = try client.release(credential: credential, provider: provider, datasets: [version]) } catch {
            die("key release from \(url) failed: \(error.reason) [\(error.code.rawValue)]", ReleaseExit.status(error))
        }
        guard let key = released.keys[dataset] else { die("the plane released no key for \(dataset)", ExitStatus.dataError) }
        let mount = PlaneMount(client: client, lease: released.lease, key: key, dataset: dataset, localTTL: o.leaseTTL, logger: logger)
        logger.notice("dataset key released by the plane", metadata: ["plane": "\(identity)", "session": "\(released.lease.session)",
                                                                      "lease_expires": "\(mount.gate.expiresAt)"])
        return (key, mount)
    }

    /// POSTs JSON over the shared libcurl client.
    static func transport(base: String, http: CurlClient) -> KeyReleaseClient.Transport {
        let root = base.hasSuffix("/") ? String(base.dropLast()) : base
        return { path, body in
            var result: Result<HTTPResponse, TransportError>!
            body.withUnsafeBytes { b in
                let req = HTTPRequest(method: "POST", url: root + path,
                                      headers: [("Content-Type", "application/json"), ("Accept", "application/json, application/problem+json")], body: .bytes(b))
                do throws(TransportError) { result = .success(try http.perform(req)) } catch { result = .failure(error) }
            }
            let r = try result.get()
            return (r.status, r.body)
        }
    }

    init(client: KeyReleaseClient, lease: Lease, key: SecureBytes, dataset: String, localTTL: UInt64?, logger: Logger) {
        self.client = client
        self.lease = Mutex(lease)
        self.localTTL = localTTL
        self.logger = logger
        log = AccessLog(datasetID: dataset)
        gate = LeaseGate(expiresAt: Self.capped(lease, localTTL), keys: [key], logger: Logger(label: "cce4fs.lease"))
    }

    static func now() -> UInt64 { UInt64(wallClockMilliseconds() / 1000) }

    /// The lease's expiry, capped at now + the local TTL.
    static func capped(_ l: Lease, _ ttl: UInt64?) -> UInt64 {
        guard let ttl else { return l.expiresAt }
        return min(l.expiresAt, now() + ttl)
    }

    /// Renews in the background until `finish` (the LeaseRenewal state machine, driven here).
    func startRenewal() {
        let first = lease.withLock { $0 }
        let issued = Self.now()
        Thread.detachNewThread { [self] in
            var machine = LeaseRenewal(issuedAt: min(issued, first.issuedAt), expiresAt: gate.expiresAt)
            var action = machine.handle(.tick(now: Self.now()))
            while !stopped.load(ordering: .acquiring) {
                switch action {
                case .stop:
                    done.signal(); return
                case .lapse(let why):
                    gate.lapse(why)
                    done.signal(); return
                case .wait(let until):
                    let now = Self.now()
                    if until > now { _ = stop.wait(timeout: .now() + .seconds(Int(min(until - now, 3600)))) }
                    action = machine.handle(.tick(now: Self.now()))
                case .renew:
                    let current = lease.withLock { $0 }
                    do throws(KeyReleaseError) {
                        let renewed = try client.renew(current)
                        lease.withLock { $0 = renewed }
                        let exp = Self.capped(renewed, localTTL)
                        gate.renewed(expiresAt: exp)
                        logger.info("lease renewed", metadata: ["expires": "\(exp)"])
                        action = machine.handle(.renewed(issuedAt: Self.now(), expiresAt: exp, now: Self.now()))
                    } catch {
                        // The plane's refusal (a 4xx with its reason) is final; anything else is retried.
                        let refused = error.code != .transport && (400..<500).contains(error.status)
                        logger.warning("lease renewal failed", metadata: ["reason": "\(error.reason)", "refused": "\(refused)"])
                        action = machine.handle(.failed(now: Self.now(), refused: refused, reason: error.reason))
                    }
                }
            }
            done.signal()
        }
    }

    /// Stops renewing and sends the access log's Merkle root (with the last lease, even lapsed).
    func finish() {
        stopped.store(true, ordering: .releasing)
        stop.signal()
        _ = done.wait(timeout: .now() + 5)
        let leaves = log.leaves()
        let root = AccessLogTree.root(leaves: leaves)
        let current = lease.withLock { $0 }
        do throws(KeyReleaseError) {
            let receipt = try client.submitAccessLog(lease: current, root: root, entries: UInt64(leaves.count))
            logger.notice("access log recorded by the plane", metadata: ["root": "\(receipt.root)", "entries": "\(receipt.entries)",
                                                                        "ledger": "\(receipt.ledgerIndexes)"])
        } catch {
            logger.error("cannot send the access log to the plane: \(error.reason); its root was \(Hex.encode(root)) over \(leaves.count) opens")
        }
    }
}
