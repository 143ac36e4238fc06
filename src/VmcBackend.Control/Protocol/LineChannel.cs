using System.Buffers;
using System.IO.Pipelines;
using System.Text;

namespace VmcBackend.Control.Protocol;

/// <summary>
/// Lines of UTF-8 text (ended by '\n') on one direction of a channel, each at most
/// <see cref="ControlProtocol.MaxLine"/> bytes: a longer one is a protocol error, never a buffer
/// that grows without bound.
/// </summary>
public static class LineChannel
{
    /// <summary>The next line without its '\n'; null at the end of the channel.</summary>
    /// <exception cref="InvalidDataException">The line is longer than allowed, or the channel ended inside one.</exception>
    public static async ValueTask<string?> ReadLineAsync(PipeReader reader, CancellationToken ct = default)
    {
        while (true)
        {
            var result = await reader.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            var newline = buffer.PositionOf((byte)'\n');
            if (newline is { } end)
            {
                var line = buffer.Slice(0, end);
                if (line.Length > ControlProtocol.MaxLine) throw TooLong();
                string text = Encoding.UTF8.GetString(line);
                reader.AdvanceTo(buffer.GetPosition(1, end));
                return text;
            }
            if (buffer.Length > ControlProtocol.MaxLine) throw TooLong();
            if (result.IsCompleted)
            {
                bool partial = buffer.Length > 0;
                reader.AdvanceTo(buffer.End);
                if (partial) throw new InvalidDataException("the channel ended inside a line");
                return null;
            }
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    public static async ValueTask WriteLineAsync(PipeWriter writer, string line, CancellationToken ct = default)
    {
        int n = Encoding.UTF8.GetByteCount(line);
        var span = writer.GetSpan(n + 1);
        Encoding.UTF8.GetBytes(line, span);
        span[n] = (byte)'\n';
        writer.Advance(n + 1);
        await writer.FlushAsync(ct).ConfigureAwait(false);
    }

    private static InvalidDataException TooLong() => new($"a line longer than {ControlProtocol.MaxLine} bytes");
}
