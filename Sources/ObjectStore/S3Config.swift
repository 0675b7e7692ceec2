// s3://BUCKET/PREFIX: where the store is, how to sign for it, how hard to try.
import Foundation

/// How an `s3://` store is reached. Every field has a default; `S3Options.resolve` fills
/// them from options, the AWS_* environment variables and ~/.aws/credentials.
public struct S3Options: Sendable {
    /// `https://host[:port]` or `http://host[:port]` (loopback test servers). Default:
    /// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else https://s3.REGION.amazonaws.com.
    public var endpoint: String?
    /// Default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1.
    public var region: String?
    /// Profile in the shared credentials file. Default: AWS_PROFILE, else "default".
    public var profile: String?
    /// Default: AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials.
    public var credentialsFile: String?
    /// Path-style (`endpoint/bucket/key`) or virtual-host (`bucket.endpoint/key`) URLs.
    /// Default: virtual-host for AWS's own endpoint, path-style for any other endpoint.
    public var addressing: S3Addressing?
    /// A PEM bundle of CA certificates (default: the system's). Certificate and host-name
    /// checks are always on.
    public var caFile: String?
    /// Seconds to wait for a TCP/TLS connection.
    public var connectTimeout: Double = 5
    /// A transfer slower than 1 KiB/s for this many seconds is abandoned (and retried).
    public var stallTimeout: Double = 10
    /// Attempts per request (1 = no retries).
    public var maxAttempts: Int = 6
    /// Retries stop once this many seconds have passed since the first attempt.
    public var retryTime: Double = 30
    /// Objects larger than this are uploaded in parts of this size (multipart upload).
    public var uploadPartSize: Int = 8 << 20
    /// Easy handles (each keeps its own connection alive) kept for reuse.
    public var maxIdleConnections: Int = 32
    /// Reads are fetched and cached in blocks of this many bytes (0: no block cache, one
    /// ranged GET per read).
    public var blockSize: Int = 1 << 20
    /// Memory for cached and in-flight ciphertext blocks.
    public var cacheMemory: Int = 128 << 20
    /// The readahead window: it starts at one block on sequential reads and doubles up to this.
    public var readaheadMax: Int = 16 << 20
    /// A directory for an on-disk cache of ciphertext blocks (nil: none), and its size limit.
    public var diskCacheDirectory: String?
    public var diskCacheLimit: Int64 = 1 << 30

    public init() {}
}

public enum S3Addressing: String, Sendable {
    case path, virtual
}

/// Access key, secret and optional session token. The description never shows the secret
/// or the token.
public struct S3Credentials: Sendable, CustomStringConvertible {
    public let accessKey: String
    public let secretKey: String
    public let sessionToken: String?
    public let source: String

    public init(accessKey: String, secretKey: String, sessionToken: String? = nil, source: String) {
        self.accessKey = accessKey; self.secretKey = secretKey; self.sessionToken = sessionToken; self.source = source
    }

    public var description: String {
        "access key \(accessKey) (secret redacted\(sessionToken == nil ? "" : ", session token redacted")) from \(source)"
    }
}

/// A fully resolved `s3://` store configuration.
public struct S3Config: Sendable, CustomStringConvertible {
    public let bucket: String
    /// Key prefix without leading or trailing "/" ("" for the bucket's root).
    public let prefix: String
    public let endpoint: String
    public let region: String
    public let addressing: S3Addressing
    public let credentials: S3Credentials
    public let options: S3Options

    public var url: String { "s3://" + bucket + (prefix.isEmpty ? "" : "/" + prefix) }

    public var description: String {
        "\(url) at \(endpoint) (\(addressing.rawValue)-style, region \(region), \(credentials))"
    }

    /// Parses `s3://BUCKET[/PREFIX]` and resolves the rest from `options` and `environment`.
    public static func resolve(url: String, options: S3Options, environment: [String: String]) throws(ObjectStoreError) -> S3Config {
        guard url.hasPrefix("s3://") else { throw ObjectStoreError(.invalidURL, key: nil, "'\(url)' is not an s3:// URL") }
        var rest = String(url.dropFirst(5))
        while rest.hasSuffix("/") { rest.removeLast() }
        let bucket: String, prefix: String
        if let slash = rest.firstIndex(of: "/") {
            bucket = String(rest[..<slash]); prefix = String(rest[rest.index(after: slash)...])
        } else {
            bucket = rest; prefix = ""
        }
        let b = Array(bucket.utf8)
        let bucketOK = (3...63).contains(b.count) && b.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x2e }
            && b.first != 0x2d && b.first != 0x2e && b.last != 0x2d && b.last != 0x2e
        guard bucketOK else {
            throw ObjectStoreError(.invalidURL, key: nil, "'\(bucket)' is not a valid S3 bucket name (3-63 of a-z 0-9 . -); use s3://BUCKET/PREFIX")
        }
        if !prefix.isEmpty {
            do { _ = try ObjectKey(prefix) } catch {
                throw ObjectStoreError(.invalidURL, key: nil, "the prefix of \(url) must be a valid object key prefix: \(error.detail)")
            }
        }
        let env = { (name: String) -> String? in
            guard let v = environment[name], !v.isEmpty else { return nil }
            return v
        }
        let region = options.region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? "us-east-1"
        guard !region.isEmpty, region.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }) else {
            throw ObjectStoreError(.invalidURL, key: nil, "'\(region)' is not a region name")
        }
        let custom = options.endpoint ?? env("AWS_ENDPOINT_URL_S3") ?? env("AWS_ENDPOINT_URL")
        var endpoint = custom ?? "https://s3.\(region).amazonaws.com"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        guard endpoint.hasPrefix("https://") || endpoint.hasPrefix("http://") else {
            throw ObjectStoreError(.invalidURL, key: nil, "S3 endpoint '\(endpoint)' must start with https:// (or http:// for a local test server)")
        }
        let hostPart = endpoint.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: true)
        guard hostPart.count == 2, !hostPart[1].isEmpty else {
            throw ObjectStoreError(.invalidURL, key: nil, "S3 endpoint '\(endpoint)' must be scheme://host[:port], with no path")
        }
        let addressing = options.addressing ?? (custom == nil && !bucket.contains(".") ? .virtual : .path)
        let credentials = try resolveCredentials(options: options, environment: environment)
        return S3Config(bucket: bucket, prefix: prefix, endpoint: endpoint, region: region, addressing: addressing,
                        credentials: credentials, options: options)
    }

    /// Options' profile or credentials file first; then AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    /// (+ AWS_SESSION_TOKEN); then the shared credentials file's profile.
    static func resolveCredentials(options: S3Options, environment: [String: String]) throws(ObjectStoreError) -> S3Credentials {
        let env = { (name: String) -> String? in
            guard let v = environment[name], !v.isEmpty else { return nil }
            return v
        }
        let explicitFile = options.profile != nil || options.credentialsFile != nil
        if !explicitFile, let id = env("AWS_ACCESS_KEY_ID") {
            guard let secret = env("AWS_SECRET_ACCESS_KEY") else {
                throw ObjectStoreError(.invalidURL, key: nil, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
            }
            return S3Credentials(accessKey: id, secretKey: secret, sessionToken: env("AWS_SESSION_TOKEN"), source: "the AWS_* environment variables")
        }
        let profile = options.profile ?? env("AWS_PROFILE") ?? "default"
        let home = env("HOME") ?? "/root"
        let file = options.credentialsFile ?? env("AWS_SHARED_CREDENTIALS_FILE") ?? home + "/.aws/credentials"
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ObjectStoreError(.invalidURL, key: nil, explicitFile
                ? "cannot read the S3 credentials file \(file)"
                : "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put a [\(profile)] profile in \(file)")
        }
        let values = parseINISection(text, section: profile)
        guard let id = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] else {
            throw ObjectStoreError(.invalidURL, key: nil, "profile [\(profile)] in \(file) needs aws_access_key_id and aws_secret_access_key")
        }
        return S3Credentials(accessKey: id, secretKey: secret, sessionToken: values["aws_session_token"], source: "profile [\(profile)] of \(file)")
    }

    /// `key = value` lines of one `[section]` of an INI file (the AWS shared-file format).
    static func parseINISection(_ text: String, section: String) -> [String: String] {
        var out = [String: String](), inSection = false
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                inSection = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces) == section
                continue
            }
            guard inSection, let eq = line.firstIndex(of: "=") else { continue }
            out[line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }
}
