// `cce4 plane`: `serve` runs the Privacy Plane (docs/plane.md); the client subcommands are in
// PlaneClientCommands.swift (docs/plane-client.md).
import ArgumentParser
import Dispatch
import Foundation
import Logging
import PrivacyPlane
import Synchronization

struct PlaneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plane", abstract: "Run a Privacy Plane (serve), or talk to one: sign in, approve it as your operator, list versions.",
        subcommands: [Serve.self] + PlaneClientCommands.all)

    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the Privacy Plane HTTP API until SIGTERM or SIGINT (requests in flight finish first).",
            discussion: """
            Settings come from --config (JSON; docs/plane.md lists the keys), then CCE4_PLANE_* \
            environment variables, then these flags. Once listening it prints one line to stdout: \
            'listening on http://HOST:PORT operator ADDRESS'. Logs go to stderr and never contain \
            keys, tokens or dataset contents.
            """)

        @Option(help: ArgumentHelp("A JSON configuration file.", valueName: "file")) var config: String?
        @Option(help: "Interface to listen on (default 127.0.0.1).") var host: String?
        @Option(help: "TCP port; 0 picks a free one (default 8443).") var port: Int?
        @Option(help: ArgumentHelp("The object store: file://DIR or s3://BUCKET/PREFIX.", valueName: "url")) var store: String?
        @Option(help: ArgumentHelp("The ledger file (make one with `cce4 ledger init`).", valueName: "file")) var ledger: String?
        @Option(help: "host:port that clients use, which sign-in messages must name (default: HOST:PORT).") var publicAuthority: String?
        @Option(help: "Chain id that sign-in messages must carry (default 1).") var chainId: UInt64?
        @Option(help: "Bearer-token lifetime in seconds (default 3600).") var tokenTtl: UInt64?
        @Option(help: "Largest upload in bytes.") var maxUploadBytes: Int64?
        @Option(help: ArgumentHelp("Release dataset keys to attested CVMs under this attestation policy (allow-listed measurements; `allowSimulated` for development). Without it the key-release routes answer 503.", valueName: "file")) var attestationPolicy: String?
        @Option(help: ArgumentHelp("Attestation collateral (Intel PCS / AMD KDS files, or simulated_key.pub to pin the simulated provider).", valueName: "dir")) var attestationCollateral: String?
        @Option(help: "Longest lease key release grants, seconds (default 300; the rental's end caps it too).") var leaseTtl: UInt64?
        @Option(name: .customLong("insecure-dev-kek"), help: ArgumentHelp(
            "DEVELOPMENT ONLY: take the key-encryption key from this file (`cce4 key generate`). Every response and log line is labelled insecure.",
            valueName: "file")) var insecureDevKEK: String?
        @Option(help: "Log level (trace, debug, info, notice, warning, error, critical).") var logLevel: Logger.Level = .info

        func run() throws {
            try guarded {
                var c = PlaneConfig()
                if let config { c = try PlaneConfig.load(file: config) }
                try c.apply(environment: ProcessInfo.processInfo.environment)
                if let host { c.host = host }
                if let port { c.port = port }
                if let store { c.store = store }
                if let ledger { c.ledger = ledger }
                if let publicAuthority { c.publicAuthority = publicAuthority }
                if let chainId { c.chainID = chainId }
                if let tokenTtl { c.tokenTTL = tokenTtl }
                if let maxUploadBytes { c.maxUploadBytes = maxUploadBytes }
                if let attestationPolicy { c.attestationPolicy = attestationPolicy }
                if let attestationCollateral { c.attestationCollateral = attestationCollateral }
                if let leaseTtl { c.leaseTTL = leaseTtl }
                if let insecureDevKEK { c.sealing = .devKeyFile; c.devKEKFile = insecureDevKEK; c.allowInsecureDevKEK = true }
                // Every log line of every component (the ledger's too) carries the sealing label
                // when the KEK is not TEE-sealed.
                let level = logLevel, insecure = c.sealing == .devKeyFile
                LoggingSystem.bootstrap { label in
                    var h = StreamLogHandler.standardError(label: label)
                    h.logLevel = level
                    if insecure { h.metadata["sealing"] = "dev-insecure" }
                    return h
                }
                let server = try PlaneServer(config: c)
                let failure = Mutex<String?>(nil)
                let done = DispatchSemaphore(value: 0)
                let scheme = c.publicScheme, host = c.host
                let op = server.service.identity.address.checksummed
                Task {
                    do {
                        try await server.run(handleSignals: true) { port in
                            FileHandle.standardOutput.write(Data("listening on \(scheme)://\(host):\(port) operator \(op)\n".utf8))
                        }
                    } catch { failure.withLock { $0 = "\(error)" } }
                    done.signal()
                }
                done.wait()
                if let f = failure.withLock({ $0 }) { throw Failure(description: "the plane stopped: \(f)", exitCode: Failure.ioError) }
            }
        }
    }
}
