// The key-release routes (docs/key-release.md): the plane hands each request's JSON to the
// transport-agnostic KeyReleaseAuthority, off the event loop (it appends to the ledger and
// fsyncs), and returns its JSON or problem+json answer unchanged.
import Attestation
import Envelope
import Foundation
import Hummingbird
import KeyRelease
import Ledger
import NIOCore

/// DEKs for key release: unwrapped from the store by the plane's key store.
struct PlaneDatasetKeys: DatasetKeyProvider {
    let service: PlaneService
    func key(dataset: String, root: SHA256Digest) throws -> SecureBytes { try service.datasetKey(dataset: dataset, root: root.hex) }
}

extension KeyReleaseAuthority {
    /// The authority a plane with `config` runs, or nil when no attestation policy is set. It
    /// gets its own ledger handle (the authority serializes its own use; the embedded engine's
    /// file lock and the chain serialize it with the plane's other writers).
    static func forPlane(config: PlaneConfig, service: PlaneService) throws -> KeyReleaseAuthority? {
        guard let file = config.attestationPolicy else { return nil }
        guard let bytes = FileManager.default.contents(atPath: file) else {
            throw PlaneConfigError("cannot read the attestation policy \(file)")
        }
        let policy: Policy
        do { policy = try Policy(json: Array(bytes)) } catch { throw PlaneConfigError("attestation policy \(file): \(error)") }
        let ledger = try Ledgers.open(config.ledger, writable: true)
        let directory = config.attestationCollateral
        var log = service.logger
        log[metadataKey: "component"] = "key-release"
        if policy.allowSimulated {
            log.warning("simulated attestation evidence is ACCEPTED by this plane's policy: releases to it prove nothing and are recorded as key.release.simulated")
        }
        return KeyReleaseAuthority(ledger: ledger, policy: policy, allowSimulated: policy.allowSimulated, identity: service.identity,
                                   macKey: service.keys.keyReleaseMACKey, keys: PlaneDatasetKeys(service: service),
                                   leaseTTL: config.leaseTTL,
                                   collateral: { bytes in try AttestationVerifier.collateral(for: bytes, directory: directory) },
                                   logger: log)
    }
}

enum KeyReleaseRoutes {
    static let paths = [KeyReleaseAuthority.Route.challenge, KeyReleaseAuthority.Route.release,
                        KeyReleaseAuthority.Route.renew, KeyReleaseAuthority.Route.accessLog]

    static func register(on: (HTTPRequest.Method, String, @escaping Handler) -> Void, authority: KeyReleaseAuthority?) {
        for path in paths {
            on(.post, path) { req, _ in
                guard let authority else {
                    // Not a dependency failure (whose details stay in the log): say what to configure.
                    return Routes.json(ProblemBody(type: "https://cce4long.dev/problems/key-release-not-configured", title: "Service Unavailable", status: 503,
                                                   detail: "this plane releases no keys: start it with an attestation policy (--attestation-policy FILE)",
                                                   instance: path), .serviceUnavailable, contentType: "application/problem+json")
                }
                var r = req
                let buf: ByteBuffer
                do { buf = try await r.collectBody(upTo: KeyReleaseAuthority.maximumBodySize) } catch {
                    throw PlaneError.payloadTooLarge("key-release bodies are limited to \(KeyReleaseAuthority.maximumBodySize) bytes")
                }
                let body = Array(buffer: buf)
                let answer = try await blocking { authority.handle(path: path, body: body) }
                var h = HTTPFields()
                h[.contentType] = (200..<300).contains(answer.status) ? "application/json" : "application/problem+json"
                return Response(status: .init(code: answer.status), headers: h, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
            }
        }
    }
}
