// EIP-1559 (type 2) transactions, built and signed here: the signing hash is
// Keccak-256(0x02 || rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to, value,
// data, accessList])), the raw transaction 0x02 || rlp([... the same nine ..., yParity, r, s]).
// Checked byte for byte against eth-account's sign_transaction.
import Wallet

public struct EIP1559Transaction: Equatable, Sendable {
    public var chainID: UInt64
    public var nonce: UInt64
    public var maxPriorityFeePerGas: UInt64
    public var maxFeePerGas: UInt64
    public var gas: UInt64
    /// nil deploys a contract (`data` is its init code).
    public var to: Address?
    /// Wei, 32 bytes big-endian (or shorter).
    public var value: [UInt8]
    public var data: [UInt8]

    public init(chainID: UInt64, nonce: UInt64, maxPriorityFeePerGas: UInt64, maxFeePerGas: UInt64, gas: UInt64,
                to: Address?, value: [UInt8] = [], data: [UInt8]) {
        self.chainID = chainID; self.nonce = nonce; self.maxPriorityFeePerGas = maxPriorityFeePerGas
        self.maxFeePerGas = maxFeePerGas; self.gas = gas; self.to = to; self.value = value; self.data = data
    }

    var fields: [RLP] {
        [.uint(chainID), .uint(nonce), .uint(maxPriorityFeePerGas), .uint(maxFeePerGas), .uint(gas),
         .bytes(to?.bytes ?? []), .uint(bigEndian: value), .bytes(data), .list([])]
    }

    /// What the sender signs.
    public var signingHash: [UInt8] { Keccak256.hash([0x02] + RLP.list(fields).encoded) }

    /// The raw signed transaction (for eth_sendRawTransaction) and its hash.
    public func signed(by key: PrivateKey) throws(WalletError) -> (raw: [UInt8], hash: [UInt8]) {
        let sig = try key.sign(hash: signingHash)
        let raw = [0x02] + RLP.list(fields + [.uint(UInt64(sig.recoveryID)), .uint(bigEndian: sig.r), .uint(bigEndian: sig.s)]).encoded
        return (raw, Keccak256.hash(raw))
    }
}
