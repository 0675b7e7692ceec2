// The evm-devnet (../shared/tools/evm-devnet: py-evm behind JSON-RPC on 127.0.0.1) for the
// chain engine's tests: started through its start.sh, stopped when the test process exits.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Devnet processes to stop at exit (atexit cannot capture context). SIGKILL: the server does
/// not always stop on SIGTERM, and it holds nothing worth a clean shutdown (memory only).
nonisolated(unsafe) private var devnetPIDs: [Int32] = []
private let registerAtExit: Void = { atexit { for p in devnetPIDs { kill(p, SIGKILL) } } }()

public final class EVMDevnet: @unchecked Sendable {
    /// The JSON-RPC URL (http://127.0.0.1:PORT).
    public let url: String
    public let chainID: UInt64
    public let pid: Int32
    /// The funded test accounts' private keys (hex, 0x-prefixed), in the devnet's order.
    public let keys: [String]

    public struct StartFailure: Error, CustomStringConvertible { public let description: String }

    /// Starts a fresh chain. `fund` addresses get 1000 ETH each.
    public init(chainID: UInt64 = 1337, fund: [String] = []) throws {
        _ = registerAtExit
        let start = Repo.shared + "/tools/evm-devnet/start.sh"
        guard FileManager.default.fileExists(atPath: start) else {
            throw StartFailure(description: "no evm-devnet at \(start) (set CCE4_SHARED to the workplace's shared/ directory, or run through make, which finds it)")
        }
        let args = fund.map { "--fund \($0)" }.joined(separator: " ")
        // Output goes to files, not pipes: the server start.sh leaves running inherits the shell's
        // descriptors, so a pipe would never reach end-of-file.
        let dir = TempDir("cce4-evm")
        // system(3), not Process: Foundation's waitUntilExit did not return here once the shell
        // had exited (the server it leaves running keeps the process group busy).
        let envs = "EVM_CHAIN_ID=\(chainID) "
        let command = "cd \"\(Repo.root)\" && \(envs)/bin/bash -c 'source \"\(start)\" \(args) && cp \"$EVM_READY_FILE\" \"\(dir.sub("ready.json"))\"' >\"\(dir.sub("log"))\" 2>&1 </dev/null"
        let status = system(command)
        let ready = try? Data(contentsOf: URL(fileURLWithPath: dir.sub("ready.json")))
        guard status == 0, let ready, let obj = try? JSONSerialization.jsonObject(with: ready) as? [String: Any],
              let url = obj["url"] as? String, let pid = obj["pid"] as? Int, let chain = obj["chainId"] as? Int,
              let accounts = obj["accounts"] as? [String: String] else {
            throw StartFailure(description: "evm-devnet did not start: " + ((try? String(contentsOfFile: dir.sub("log"), encoding: .utf8)) ?? ""))
        }
        self.url = url
        self.pid = Int32(pid)
        self.chainID = UInt64(chain)
        // The ready file lists accounts as {address: key}; keep the keys sorted by address for a stable order.
        self.keys = accounts.keys.sorted().map { accounts[$0]! }
        devnetPIDs.append(self.pid)
    }

    /// Stops the chain.
    public func stop() { kill(pid, SIGKILL) }
}
