// swift-tools-version: 6.1
// cce4long: confidential computing engine for research on sensitive longevity data.
import PackageDescription

let strict: [SwiftSetting] = [
    .unsafeFlags(["-warnings-as-errors"], .when(configuration: .debug)),
]

let package = Package(
    name: "cce4long",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Envelope", targets: ["Envelope"]),
        .library(name: "ObjectStore", targets: ["ObjectStore"]),
        .library(name: "CurlHTTP", targets: ["CurlHTTP"]),
        .library(name: "PlaneClient", targets: ["PlaneClient"]),
        .library(name: "Dataset", targets: ["Dataset"]),
        .executable(name: "cce4", targets: ["cce4"]),
        .executable(name: "cce4-bench", targets: ["cce4-bench"]),
        .executable(name: "cce4fs", targets: ["cce4fs"]),
        .library(name: "Filesystem", targets: ["Filesystem"]),
        .library(name: "Wallet", targets: ["Wallet"]),
        .library(name: "Ledger", targets: ["Ledger"]),
        .library(name: "Attestation", targets: ["Attestation"]),
        .library(name: "PrivacyPlane", targets: ["PrivacyPlane"]),
        .library(name: "KeyRelease", targets: ["KeyRelease"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // C fence: OpenSSL libcrypto through a handful of typed shim functions.
        .target(
            name: "COpenSSL",
            linkerSettings: [.linkedLibrary("crypto")]
        ),
        // C fence: libfuse3's low-level API (version macros, bitfields, variadics), and FUSE over io_uring (liburing).
        .target(
            name: "CFuse",
            linkerSettings: [.linkedLibrary("fuse3"), .linkedLibrary("uring")]
        ),
        // C fence: libcurl's variadic setopt/getinfo and option macros (s3:// stores).
        .target(
            name: "CCurl",
            linkerSettings: [.linkedLibrary("curl")]
        ),
        // Formats and keys. Pure: no I/O, no FUSE, no network.
        .target(name: "Envelope", dependencies: ["COpenSSL"], swiftSettings: strict),
        // HTTP over libcurl for every client: pooled keep-alive handles, timeouts, retries, SigV4.
        .target(name: "CurlHTTP", dependencies: ["CCurl"], swiftSettings: strict),
        // The ObjectStore protocol and its backends.
        .target(name: "ObjectStore", dependencies: ["CurlHTTP"], swiftSettings: strict),
        // Datasets: the packer, the reader and the verifier over Envelope + ObjectStore.
        .target(
            name: "Dataset",
            dependencies: ["Envelope", "ObjectStore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Ethereum identities: secp256k1, Keccak-256, EIP-55/191/4361, keystore v3.
        .target(name: "Wallet", dependencies: ["COpenSSL", "Envelope"], swiftSettings: strict),
        // Datasets, rentals (ERC-4907) and audit events; the embedded signed, Merkle-tree log.
        // EVM chains: RLP, the contract ABI, EIP-1559 transactions, JSON-RPC with a quorum of endpoints.
        .target(name: "EVM", dependencies: ["Wallet", "Envelope", "CurlHTTP", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        .target(name: "Ledger", dependencies: ["Wallet", "Envelope", "EVM", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        // Attestation evidence: configfs-tsm and simulated providers; TDX, SEV-SNP verifiers; policy.
        .target(name: "Attestation", dependencies: ["COpenSSL", "Envelope"], swiftSettings: strict),
        // The Privacy Plane's HTTP client: sign-in, operator approval, streamed version pushes.
        .target(name: "PlaneClient", dependencies: ["CurlHTTP", "Wallet", "Ledger", "Dataset", "Envelope"], swiftSettings: strict),
        // The Privacy Plane: the HTTP service (Hummingbird 2) that signs users in, encrypts uploads,
        // keeps wrapped DEKs in the store and records datasets, rentals and audit on the ledger.
        .target(
            name: "PrivacyPlane",
            dependencies: [
                "Dataset", "Envelope", "ObjectStore", "Wallet", "Ledger", "KeyRelease", "Attestation",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        // Attested key release: Job Credentials, the protocol's messages, the plane's authority, the CVM's client.
        .target(
            name: "KeyRelease",
            dependencies: ["Envelope", "Wallet", "Attestation", "Ledger", "COpenSSL", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "cce4",
            dependencies: [
                "Dataset", "Envelope", "ObjectStore", "Wallet", "Ledger", "EVM", "Attestation", "PrivacyPlane", "PlaneClient", "KeyRelease",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The filesystem: semantics tests drive without FUSE, and a thin FUSE bridge.
        .target(
            name: "Filesystem",
            dependencies: ["CFuse", "Dataset", "Envelope", "ObjectStore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The mount command: cce4fs SOURCE MOUNTPOINT -o OPTIONS (mount.fuse3's shape).
        .executableTarget(
            name: "cce4fs",
            dependencies: ["Filesystem", "Dataset", "Envelope", "ObjectStore", "KeyRelease", "Attestation", "Wallet", "CurlHTTP",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "cce4-bench",
            dependencies: ["Envelope", "Wallet", "Ledger", "CurlHTTP", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        // Helpers shared by the test targets: temp dirs, subprocesses, the repo's venv.
        .target(name: "TestSupport", dependencies: ["ObjectStore"], path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(name: "EnvelopeTests", dependencies: ["Envelope", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "CurlHTTPTests", dependencies: ["CurlHTTP", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "ObjectStoreTests", dependencies: ["ObjectStore", "CurlHTTP", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "DatasetTests", dependencies: ["Dataset", "Envelope", "ObjectStore", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "CLITests", dependencies: ["TestSupport"], swiftSettings: strict),
        .testTarget(name: "AttestationTests", dependencies: ["Attestation", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "FilesystemTests", dependencies: ["Filesystem", "Dataset", "Envelope", "ObjectStore", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "WalletTests", dependencies: ["Wallet", "Envelope", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "KeyReleaseTests", dependencies: ["KeyRelease", "Attestation", "Ledger", "Wallet", "Envelope", "TestSupport"], swiftSettings: strict),
        // The Privacy Plane on loopback: in-process servers and `cce4 plane serve` subprocesses.
        .testTarget(name: "PlaneTests", dependencies: ["PrivacyPlane", "Dataset", "Envelope", "ObjectStore", "Wallet", "Ledger", "KeyRelease", "Attestation", "CurlHTTP", "PlaneClient", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "PlaneClientTests", dependencies: ["PlaneClient", "Dataset", "Wallet", "Ledger", "Envelope", "CurlHTTP", "ObjectStore", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "LedgerTests", dependencies: ["Ledger", "EVM", "Wallet", "Envelope", "TestSupport"], swiftSettings: strict),
        // Real FUSE mounts (root, /dev/fuse): the cce4fs binary, Python readers, mount(8).
        .testTarget(name: "MountTests", dependencies: ["TestSupport"], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
