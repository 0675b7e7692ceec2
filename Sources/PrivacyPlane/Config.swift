// The plane's configuration: a JSON file, then CCE4_PLANE_* environment variables over it,
// then command-line flags over both (the CLI applies those). docs/plane.md §Configuration.
import Foundation

/// How the plane obtains its key-encryption key (KEK).
public enum SealingMode: String, Sendable, Codable, CaseIterable {
    /// A 32-byte key in a local file (`cce4 key generate`). For development only: refused
    /// unless `allowInsecureDevKEK` is set, and every response and log line says so.
    case devKeyFile = "dev-key-file"
    /// Designed, not built: a key derived by the AMD SEV-SNP firmware (MSG_KEY_REQ) bound to
    /// the launch measurement. docs/plane.md §Sealing.
    case snpDerived = "snp-derived"
    /// Designed, not built: a KMS that releases the KEK to attested evidence. docs/plane.md.
    case kmsAttested = "kms-attested"
}

/// Everything `PlaneServer` needs to start.
public struct PlaneConfig: Sendable, Codable, Equatable {
    /// Interface to listen on. Loopback unless you mean to expose the plane.
    public var host: String = "127.0.0.1"
    /// TCP port; 0 picks a free one (the bound port is logged and printed).
    public var port: Int = 8443
    /// The address clients reach the plane at (`host:port`), which SIWE messages must name as
    /// their domain. Default: `host:boundPort`.
    public var publicAuthority: String?
    /// `http` or `https` for the SIWE URI (TLS is terminated in front of the plane for now).
    public var publicScheme: String = "http"
    /// The object store: file://DIR or s3://BUCKET/PREFIX.
    public var store: String = ""
    /// The ledger: a path or file:// URL (embedded engine).
    public var ledger: String = ""
    public var sealing: SealingMode = .devKeyFile
    /// The KEK file for `dev-key-file`.
    public var devKEKFile: String?
    /// Must be true for `dev-key-file` to be accepted.
    public var allowInsecureDevKEK: Bool = false
    /// EIP-155 chain id that SIWE messages must carry (0 for the embedded ledger... but SIWE
    /// requires ≥ 1, so the default is 1).
    public var chainID: UInt64 = 1
    /// Bearer-token lifetime, seconds.
    public var tokenTTL: UInt64 = 3600
    /// How long a sign-in nonce stays valid, seconds.
    public var nonceTTL: UInt64 = 300
    /// Largest JSON request body, bytes.
    public var maxJSONBody: Int = 64 * 1024
    /// Largest upload (tar) body, bytes.
    public var maxUploadBytes: Int64 = 64 << 30
    /// Largest single file inside an upload, bytes.
    public var maxFileBytes: Int64 = 16 << 30
    /// Largest number of entries in an upload.
    public var maxEntries: Int = 1_000_000
    /// The attestation policy (an Attestation policy file: allow-listed measurements, TCB
    /// floor, whether simulated evidence is accepted) that key release checks evidence against.
    /// Without one the key-release routes answer 503: this plane releases no keys.
    public var attestationPolicy: String?
    /// A directory of attestation collateral (Intel PCS / AMD KDS files, or `simulated_key.pub`
    /// to pin the simulated provider's key). docs/attestation.md §Collateral.
    public var attestationCollateral: String?
    /// Longest lease key release grants, seconds (the rental's end caps it too).
    public var leaseTTL: UInt64 = 300

    public init() {}

    enum CodingKeys: String, CodingKey {
        case host, port, publicAuthority, publicScheme, store, ledger, sealing, devKEKFile, allowInsecureDevKEK
        case chainID = "chainId", tokenTTL, nonceTTL, maxJSONBody, maxUploadBytes, maxFileBytes, maxEntries
        case attestationPolicy, attestationCollateral, leaseTTL
    }

    public init(from d: Decoder) throws {
        let c = try d.container(keyedBy: CodingKeys.self)
        var x = PlaneConfig()
        x.host = try c.decodeIfPresent(String.self, forKey: .host) ?? x.host
        x.port = try c.decodeIfPresent(Int.self, forKey: .port) ?? x.port
        x.publicAuthority = try c.decodeIfPresent(String.self, forKey: .publicAuthority)
        x.publicScheme = try c.decodeIfPresent(String.self, forKey: .publicScheme) ?? x.publicScheme
        x.store = try c.decodeIfPresent(String.self, forKey: .store) ?? x.store
        x.ledger = try c.decodeIfPresent(String.self, forKey: .ledger) ?? x.ledger
        x.sealing = try c.decodeIfPresent(SealingMode.self, forKey: .sealing) ?? x.sealing
        x.devKEKFile = try c.decodeIfPresent(String.self, forKey: .devKEKFile)
        x.allowInsecureDevKEK = try c.decodeIfPresent(Bool.self, forKey: .allowInsecureDevKEK) ?? false
        x.chainID = try c.decodeIfPresent(UInt64.self, forKey: .chainID) ?? x.chainID
        x.tokenTTL = try c.decodeIfPresent(UInt64.self, forKey: .tokenTTL) ?? x.tokenTTL
        x.nonceTTL = try c.decodeIfPresent(UInt64.self, forKey: .nonceTTL) ?? x.nonceTTL
        x.maxJSONBody = try c.decodeIfPresent(Int.self, forKey: .maxJSONBody) ?? x.maxJSONBody
        x.maxUploadBytes = try c.decodeIfPresent(Int64.self, forKey: .maxUploadBytes) ?? x.maxUploadBytes
        x.maxFileBytes = try c.decodeIfPresent(Int64.self, forKey: .maxFileBytes) ?? x.maxFileBytes
        x.maxEntries = try c.decodeIfPresent(Int.self, forKey: .maxEntries) ?? x.maxEntries
        x.attestationPolicy = try c.decodeIfPresent(String.self, forKey: .attestationPolicy)
        x.attestationCollateral = try c.decodeIfPresent(String.self, forKey: .attestationCollateral)
        x.leaseTTL = try c.decodeIfPresent(UInt64.self, forKey: .leaseTTL) ?? x.leaseTTL
        self = x
    }

    /// Reads a JSON configuration file; unknown keys are refused (a typo must not silently
    /// leave a default in place).
    public static func load(file: String) throws(PlaneConfigError) -> PlaneConfig {
        guard let data = FileManager.default.contents(atPath: file) else { throw PlaneConfigError("cannot read configuration file \(file)") }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw PlaneConfigError("\(file) is not a JSON object")
        }
        let known = Set(["host", "port", "publicAuthority", "publicScheme", "store", "ledger", "sealing", "devKEKFile", "allowInsecureDevKEK",
                         "chainId", "tokenTTL", "nonceTTL", "maxJSONBody", "maxUploadBytes", "maxFileBytes", "maxEntries",
                         "attestationPolicy", "attestationCollateral", "leaseTTL"])
        if let bad = obj.keys.sorted().first(where: { !known.contains($0) }) {
            throw PlaneConfigError("\(file): unknown setting '\(bad)' (known: \(known.sorted().joined(separator: ", ")))")
        }
        do { return try JSONDecoder().decode(PlaneConfig.self, from: data) } catch {
            throw PlaneConfigError("\(file): \(Self.describe(error))")
        }
    }

    static func describe(_ e: any Error) -> String {
        switch e {
        case DecodingError.typeMismatch(_, let c) where c.codingPath.last?.stringValue == "sealing",
             DecodingError.dataCorrupted(let c) where c.codingPath.last?.stringValue == "sealing":
            return "setting 'sealing' is not one of \(SealingMode.allCases.map(\.rawValue).joined(separator: ", "))"
        case DecodingError.typeMismatch(_, let c), DecodingError.dataCorrupted(let c):
            return "setting '\(c.codingPath.map { $0.stringValue }.joined(separator: "."))' has the wrong type or value"
        default: return "not a valid configuration"
        }
    }

    /// Applies CCE4_PLANE_* variables: HOST, PORT, PUBLIC_AUTHORITY, STORE, LEDGER, SEALING,
    /// DEV_KEK_FILE, CHAIN_ID, TOKEN_TTL, NONCE_TTL, MAX_UPLOAD_BYTES, ATTESTATION_POLICY,
    /// ATTESTATION_COLLATERAL, LEASE_TTL. (Allowing the insecure
    /// dev KEK is deliberately not an environment variable: it takes the flag or the file.)
    public mutating func apply(environment env: [String: String]) throws(PlaneConfigError) {
        func int<T: FixedWidthInteger>(_ name: String, _ t: T.Type) throws(PlaneConfigError) -> T? {
            guard let v = env["CCE4_PLANE_" + name] else { return nil }
            guard let n = T(v) else { throw PlaneConfigError("CCE4_PLANE_\(name)='\(v.prefix(40))' is not a number") }
            return n
        }
        if let v = env["CCE4_PLANE_HOST"] { host = v }
        if let v = try int("PORT", Int.self) { port = v }
        if let v = env["CCE4_PLANE_PUBLIC_AUTHORITY"] { publicAuthority = v }
        if let v = env["CCE4_PLANE_STORE"] { store = v }
        if let v = env["CCE4_PLANE_LEDGER"] { ledger = v }
        if let v = env["CCE4_PLANE_SEALING"] {
            guard let m = SealingMode(rawValue: v) else { throw PlaneConfigError("CCE4_PLANE_SEALING='\(v.prefix(40))' is not one of \(SealingMode.allCases.map(\.rawValue).joined(separator: ", "))") }
            sealing = m
        }
        if let v = env["CCE4_PLANE_DEV_KEK_FILE"] { devKEKFile = v }
        if let v = try int("CHAIN_ID", UInt64.self) { chainID = v }
        if let v = try int("TOKEN_TTL", UInt64.self) { tokenTTL = v }
        if let v = try int("NONCE_TTL", UInt64.self) { nonceTTL = v }
        if let v = try int("MAX_UPLOAD_BYTES", Int64.self) { maxUploadBytes = v }
        if let v = env["CCE4_PLANE_ATTESTATION_POLICY"] { attestationPolicy = v }
        if let v = env["CCE4_PLANE_ATTESTATION_COLLATERAL"] { attestationCollateral = v }
        if let v = try int("LEASE_TTL", UInt64.self) { leaseTTL = v }
    }

    /// Checks the settings fit together; says which one to fix.
    public func validate() throws(PlaneConfigError) {
        guard (0...65535).contains(port) else { throw PlaneConfigError("port \(port) is not 0...65535") }
        guard !store.isEmpty else { throw PlaneConfigError("no store: set --store, \"store\" or CCE4_PLANE_STORE (file://DIR or s3://BUCKET/PREFIX)") }
        guard !ledger.isEmpty else { throw PlaneConfigError("no ledger: set --ledger, \"ledger\" or CCE4_PLANE_LEDGER (make one with `cce4 ledger init`)") }
        guard chainID >= 1 else { throw PlaneConfigError("chainId must be at least 1 (EIP-4361)") }
        guard (60...86400).contains(tokenTTL) else { throw PlaneConfigError("tokenTTL \(tokenTTL) s is outside 60...86400") }
        guard (30...3600).contains(nonceTTL) else { throw PlaneConfigError("nonceTTL \(nonceTTL) s is outside 30...3600") }
        guard maxJSONBody >= 1024, maxUploadBytes >= 1024, maxFileBytes >= 0, maxEntries >= 1 else { throw PlaneConfigError("body and upload limits must be positive (JSON body at least 1024 bytes)") }
        guard publicScheme == "http" || publicScheme == "https" else { throw PlaneConfigError("publicScheme must be http or https") }
        guard (2...86400).contains(leaseTTL) else { throw PlaneConfigError("leaseTTL \(leaseTTL) s is outside 2...86400") }
        switch sealing {
        case .devKeyFile:
            guard allowInsecureDevKEK else {
                throw PlaneConfigError("sealing mode dev-key-file keeps the KEK in a plain file; it is refused unless you pass --insecure-dev-kek FILE (or set \"allowInsecureDevKEK\": true)")
            }
            guard devKEKFile != nil else { throw PlaneConfigError("sealing mode dev-key-file needs a key file (--insecure-dev-kek FILE; make one with `cce4 key generate`)") }
        case .snpDerived, .kmsAttested:
            throw PlaneConfigError("sealing mode \(sealing.rawValue) is designed (docs/plane.md) but not built yet; use dev-key-file for development")
        }
    }
}

/// A configuration the plane cannot start with; the message names the setting.
public struct PlaneConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ d: String) { description = d }
}
