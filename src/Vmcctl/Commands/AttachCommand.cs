using System.Buffers.Binary;
using System.CommandLine;
using System.Globalization;
using System.Text;
using VmcBackend.Control.Client;
using VmcBackend.Control.Protocol;

namespace Vmcctl.Commands;

/// <summary>
/// <c>vmcctl attach [--vm VM] --hmc N [--hex]</c>: this process becomes the HMC on that index.
/// Messages from the guest come out on stdout, messages for the guest (replies or unsolicited) go in
/// on stdin: each a u32 little-endian length and the bytes, or with --hex one message per line in
/// hex. Session events and refusals go to stderr. EOF on stdin (or Ctrl-C) detaches: the built-in
/// router serves the HMC again and the guest's session goes on.
/// </summary>
internal static class AttachCommand
{
    public static Command Create(Option<string> control)
    {
        var vm = new Option<string?>("--vm") { Description = "The VM (name or front-end pid); may be left out when one VM is connected", HelpName = "VM" };
        var hmc = new Option<int>("--hmc") { Description = "The HMC index to take over", HelpName = "N", Required = true };
        var hex = new Option<bool>("--hex") { Description = "One message per line in hex on stdin and stdout (for people and shell scripts)" };
        var cmd = new Command("attach", "Play the HMC on one index of a VM: the guest's messages on stdout, yours on stdin") { vm, hmc, hex };
        cmd.SetAction(async (r, ct) =>
        {
            using var signals = Exit.OnSignals(out var registrations);
            using (registrations)
            {
                using var both = CancellationTokenSource.CreateLinkedTokenSource(ct, signals.Token);
                return await Exit.WithClient(r.GetValue(control)!, both.Token,
                    (client, token) => Run(client, r.GetValue(vm), r.GetValue(hmc), r.GetValue(hex), token));
            }
        });
        return cmd;
    }

    private static async Task<int> Run(ControlClient client, string? vm, int hmc, bool hex, CancellationToken ct)
    {
        var session = await client.AttachAsync(vm, hmc, ct);
        await using var sessionScope = session;
        Console.Error.WriteLine($"vmcctl: attached to HMC {hmc} of {vm ?? "the VM"}; messages on stdin/stdout ({(hex ? "hex, one per line" : "u32 little-endian length + bytes")}); EOF on stdin detaches");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var toGuest = StdinToGuest(session, hex, stop.Token);
        var fromGuest = GuestToStdout(session, hex, stop.Token);
        var first = await Task.WhenAny(toGuest, fromGuest);
        await stop.CancelAsync();
        int rc = await first;
        if (first == toGuest) Console.Error.WriteLine(rc == Exit.Ok ? "vmcctl: detached" : "vmcctl: detached after an error");
        return ct.IsCancellationRequested ? Exit.Ok : rc;
    }

    /// <summary>Until EOF on stdin (exit 0) or bad input (exit 2).</summary>
    private static async Task<int> StdinToGuest(AttachSession session, bool hex, CancellationToken ct)
    {
        var stdin = Console.OpenStandardInput();
        try
        {
            if (hex)
            {
                using var lines = new StreamReader(stdin, Encoding.ASCII);
                int n = 0;
                while (await lines.ReadLineAsync(ct) is { } line)
                {
                    n++;
                    string digits = string.Concat(line.Where(ch => !char.IsWhiteSpace(ch)));
                    if (digits.Length == 0 || digits[0] == '#') continue;
                    byte[] message;
                    try { message = Convert.FromHexString(digits); }
                    catch (FormatException) { return Exit.Error($"stdin line {n} is not hex (one message per line, e.g. DECAFF20...)", Exit.Usage); }
                    if (message.Length > AttachFrames.MaxPayload) return Exit.Error($"stdin line {n}: a message of {message.Length} bytes (at most {AttachFrames.MaxPayload})", Exit.Usage);
                    await session.SendAsync(message, ct);
                }
                return Exit.Ok;
            }
            var head = new byte[4];
            while (true)
            {
                if (!await ReadExactly(stdin, head, ct)) return Exit.Ok;
                int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(head);
                if (length is < 0 or > AttachFrames.MaxPayload) return Exit.Error($"a message of {(uint)length} bytes on stdin (at most {AttachFrames.MaxPayload}; is the length a u32 little-endian?)", Exit.Usage);
                var message = new byte[length];
                if (!await ReadExactly(stdin, message, ct)) return Exit.Error($"stdin ended inside a {length}-byte message", Exit.Usage);
                await session.SendAsync(message, ct);
            }
        }
        catch (OperationCanceledException) { return Exit.Ok; }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            return Exit.Error($"the attachment ended: {e.Message}", Exit.Failed);
        }
    }

    private static async Task<bool> ReadExactly(Stream s, byte[] buffer, CancellationToken ct)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n = await s.ReadAsync(buffer.AsMemory(got), ct);
            if (n == 0)
            {
                if (got == 0) return false;
                throw new IOException($"stdin ended inside a message ({got} of {buffer.Length} bytes)");
            }
            got += n;
        }
        return true;
    }

    /// <summary>Until vmcd ends the attachment (exit 1) or stdout breaks (exit 1).</summary>
    private static async Task<int> GuestToStdout(AttachSession session, bool hex, CancellationToken ct)
    {
        var stdout = Console.OpenStandardOutput();
        try
        {
            while (await session.ReadAsync(ct) is { } f)
            {
                switch (f.Type)
                {
                    case AttachFrameType.Message:
                        if (hex)
                        {
                            await stdout.WriteAsync(Encoding.ASCII.GetBytes(Convert.ToHexString(f.Payload) + "\n"), ct);
                        }
                        else
                        {
                            var head = new byte[4];
                            BinaryPrimitives.WriteUInt32LittleEndian(head, (uint)f.Payload.Length);
                            await stdout.WriteAsync(head, ct);
                            await stdout.WriteAsync(f.Payload, ct);
                        }
                        await stdout.FlushAsync(ct);
                        break;
                    case AttachFrameType.Opened:
                        Console.Error.WriteLine($"vmcctl: the guest opened a session (HMC ID \"{HmcId(f.Payload)}\")");
                        break;
                    case AttachFrameType.Closed:
                        Console.Error.WriteLine("vmcctl: the guest's session ended");
                        break;
                    case AttachFrameType.Refused:
                        Console.Error.WriteLine($"vmcctl: vmcd did not send a message to the guest: {Encoding.UTF8.GetString(f.Payload)}");
                        break;
                }
            }
            return Exit.Error("vmcd ended the attachment (the VM disconnected, or vmcd stopped)", Exit.Failed);
        }
        catch (OperationCanceledException) { return Exit.Ok; }
        catch (InvalidDataException e) { return Exit.Error($"vmcd broke the attach framing: {e.Message}", Exit.Failed); }
        catch (IOException e) { return Exit.Error($"writing stdout failed ({e.Message}): the program reading it went away", Exit.Failed); }
    }

    private static string HmcId(byte[] id)
    {
        int n = Array.IndexOf(id, (byte)0);
        var text = n < 0 ? id : id[..n];
        return text.All(b => b is >= 0x20 and < 0x7F) ? Encoding.ASCII.GetString(text) : Convert.ToHexString(id);
    }
}
