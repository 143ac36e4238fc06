using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;

namespace VmcBackend.Control.Protocol;

/// <summary>Frame types of an attach channel (docs/control.md, "Attach channel").</summary>
public enum AttachFrameType : byte
{
    /// <summary>A whole HMC message: from the guest (vmcd to client) or for the guest (client to vmcd).</summary>
    Message = 1,
    /// <summary>vmcd to client: a session is open on the HMC (payload: the 32-byte HMC ID).</summary>
    Opened = 2,
    /// <summary>vmcd to client: the session ended.</summary>
    Closed = 3,
    /// <summary>vmcd to client: a message of the client's was not queued for the guest (payload: UTF-8 reason).</summary>
    Refused = 4,
}

/// <summary>One attach-channel frame.</summary>
public readonly record struct AttachFrame(AttachFrameType Type, byte[] Payload);

/// <summary>
/// Attach-channel framing: an 8-byte header (u8 type, 3 reserved bytes 0, u32 little-endian payload
/// length), then the payload, at most <see cref="MaxPayload"/> bytes.
/// </summary>
public static class AttachFrames
{
    public const int HeaderSize = 8;
    /// <summary>The largest VMC MTU.</summary>
    public const int MaxPayload = 16384;

    public static void Write(PipeWriter writer, AttachFrameType type, ReadOnlySpan<byte> payload)
    {
        var span = writer.GetSpan(HeaderSize + payload.Length);
        span[0] = (byte)type;
        span[1] = span[2] = span[3] = 0;
        BinaryPrimitives.WriteInt32LittleEndian(span[4..], payload.Length);
        payload.CopyTo(span[HeaderSize..]);
        writer.Advance(HeaderSize + payload.Length);
    }

    private static (AttachFrameType Type, int Length) Header(in ReadOnlySequence<byte> buffer)
    {
        Span<byte> head = stackalloc byte[HeaderSize];
        buffer.Slice(0, HeaderSize).CopyTo(head);
        return ((AttachFrameType)head[0], BinaryPrimitives.ReadInt32LittleEndian(head[4..]));
    }

    /// <summary>The next frame; null at the end of the channel.</summary>
    /// <exception cref="InvalidDataException">A frame too long, or the channel ended inside one.</exception>
    public static async ValueTask<AttachFrame?> ReadAsync(PipeReader reader, CancellationToken ct = default)
    {
        while (true)
        {
            var result = await reader.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length >= HeaderSize)
            {
                var (type, length) = Header(buffer);
                if (length < 0 || length > MaxPayload)
                {
                    reader.AdvanceTo(buffer.Start);
                    throw new InvalidDataException($"an attach frame of {length} bytes (at most {MaxPayload})");
                }
                if (buffer.Length >= HeaderSize + length)
                {
                    var payload = buffer.Slice(HeaderSize, length).ToArray();
                    reader.AdvanceTo(buffer.GetPosition(HeaderSize + length));
                    return new AttachFrame(type, payload);
                }
            }
            if (result.IsCompleted)
            {
                bool partial = buffer.Length > 0;
                reader.AdvanceTo(buffer.End);
                if (partial) throw new InvalidDataException("the channel ended inside an attach frame");
                return null;
            }
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}
