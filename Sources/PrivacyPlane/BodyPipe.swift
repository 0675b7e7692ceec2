// Bridges Hummingbird's async request body to the packer's blocking reads, with a bounded
// buffer: the network task waits (asynchronously) while `capacity` bytes are queued, and the
// packer's thread blocks (on a condition variable, never on the event loop) until bytes
// arrive. Consumed chunks are wiped: the only plaintext is what is in flight.
import Envelope
import Foundation

final class BodyPipe: @unchecked Sendable {
    // Lock order: `cond` alone; never held across a suspension point or a resume.
    private let cond = NSCondition()
    private var chunks: [[UInt8]] = []
    private var head = 0
    private var headOffset = 0
    private var buffered = 0
    private var finished = false
    private var failure: (any Error)?
    private var consumerClosed = false
    private var spaceWaiter: CheckedContinuation<Void, Never>?
    let capacity: Int

    init(capacity: Int = 4 << 20) { self.capacity = capacity }

    // MARK: producer (async)

    /// Queues `bytes` (taking ownership); waits while the buffer is full. Returns false once
    /// the consumer has stopped reading (an error, or the end of the archive).
    func push(_ bytes: [UInt8]) async -> Bool {
        guard enqueue(bytes) else { return false }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            if !registerWaiter(c) { c.resume() }
        }
        return !isClosed()
    }

    private func enqueue(_ bytes: [UInt8]) -> Bool {
        cond.lock(); defer { cond.unlock() }
        guard !consumerClosed else { var b = bytes; secureWipe(&b); return false }
        chunks.append(bytes)
        buffered += bytes.count
        cond.broadcast()
        return true
    }

    /// Parks the producer if the buffer is full; false if it need not wait.
    private func registerWaiter(_ c: CheckedContinuation<Void, Never>) -> Bool {
        cond.lock(); defer { cond.unlock() }
        guard buffered >= capacity, !consumerClosed else { return false }
        spaceWaiter = c
        return true
    }

    private func isClosed() -> Bool { cond.lock(); defer { cond.unlock() }; return consumerClosed }

    /// The body ended (nil) or failed.
    func finish(_ error: (any Error)? = nil) {
        cond.lock(); defer { cond.unlock() }
        if let error, failure == nil { failure = error }
        finished = true
        cond.broadcast()
    }

    // MARK: consumer (blocking)

    /// Blocking read; 0 at the end of the body. Throws the producer's failure (e.g. the body
    /// exceeded its limit, or the client went away).
    func read(into out: UnsafeMutableRawBufferPointer) throws -> Int {
        guard out.count > 0 else { return 0 }
        var waiter: CheckedContinuation<Void, Never>?
        defer { waiter?.resume() }
        cond.lock(); defer { cond.unlock() }
        while head == chunks.count && !finished && failure == nil { cond.wait() }
        if let failure { throw failure }
        if head == chunks.count { return 0 }
        var n = 0
        while n < out.count && head < chunks.count {
            let take = min(out.count - n, chunks[head].count - headOffset)
            chunks[head].withUnsafeBytes { src in
                (out.baseAddress! + n).copyMemory(from: src.baseAddress! + headOffset, byteCount: take)
            }
            n += take; headOffset += take
            if headOffset == chunks[head].count {
                secureWipe(&chunks[head]); chunks[head] = []
                head += 1; headOffset = 0
            }
        }
        if head > 64 { chunks.removeFirst(head); head = 0 }
        buffered -= n
        if buffered < capacity, let w = spaceWaiter { spaceWaiter = nil; waiter = w }
        return n
    }

    /// The consumer is done: wipes what is queued and releases the producer.
    func close() {
        var waiter: CheckedContinuation<Void, Never>?
        cond.lock()
        consumerClosed = true
        for i in chunks.indices { secureWipe(&chunks[i]) }
        chunks = []; head = 0; headOffset = 0; buffered = 0
        waiter = spaceWaiter; spaceWaiter = nil
        cond.unlock()
        waiter?.resume()
    }
}
