using System.CommandLine;
using System.Globalization;
using Serilog.Events;
using VmcBackend.Engine;
using VmcBackend.Engine.Faults;
using Vmcd.Access;
using Vmcd.Logging;

namespace Vmcd.Cli;

/// <summary>Everything vmcd was asked to do, checked: the result of parsing its command line.</summary>
public sealed record VmcdSettings(
    string? SocketPath, int? Fd, VmcLimits Limits, LogEventLevel LogLevel, LogFormat LogFormat, PeerPolicy Peers, string? ControlPath = null,
    FaultPlan? Faults = null, string? FaultsFile = null)
{
    /// <summary>The control socket: --control PATH, else &lt;socket-path&gt;.ctl; null with --control none, or with --fd/socket activation and no --control.</summary>
    public string? ControlSocket => ControlPath == "none" ? null : ControlPath ?? (SocketPath != null ? SocketPath + ".ctl" : null);
}

/// <summary>
/// vmcd's options, following the back-end program conventions of QEMU's vhost-user specification
/// (--socket-path, --fd, --print-capabilities). A bad command line gives one line on stderr and exit 2.
/// </summary>
public static class VmcdCommandLine
{
    private const int ExitUsage = 2;

    /// <summary>Handled before parsing: the convention says it ignores every other option and argument.</summary>
    public const string PrintCapabilitiesOption = "--print-capabilities";

    private static readonly Option<string?> SocketPath = new("--socket-path", "--socket")
    { Description = "Create and listen on this unix socket (mode 0600; replaces a stale socket)", HelpName = "PATH" };
    private static readonly Option<int?> Fd = new("--fd")
    { Description = "Serve on this inherited, already listening unix socket fd", HelpName = "N" };
    private static readonly Option<int> MaxMtu = new("--max-mtu")
    { HelpName = "BYTES", Description = $"Largest MTU offered to the guest ({VmcBackend.Wire.Crq.VmcConstants.MinMtu}..{VmcBackend.Wire.Crq.VmcConstants.MaxMtu})", DefaultValueFactory = _ => new VmcLimits().MaxMtu };
    private static readonly Option<int> PoolSize = new("--pool-size")
    { HelpName = "N", Description = $"Buffers per HMC offered to the guest ({VmcBackend.Wire.Crq.VmcConstants.MinPool}..{VmcBackend.Wire.Crq.VmcConstants.MaxPool})", DefaultValueFactory = _ => new VmcLimits().PoolSize };
    private static readonly Option<int> MaxHmcs = new("--max-hmcs")
    { HelpName = "N", Description = $"HMC sessions offered to the guest ({VmcBackend.Wire.Crq.VmcConstants.MinHmcs}..{VmcBackend.Wire.Crq.VmcConstants.MaxHmcs})", DefaultValueFactory = _ => new VmcLimits().MaxHmcs };
    private static readonly Option<string> DrcIndex = new("--drc-index")
    { HelpName = "INDEX", Description = "DRC index H_REQUEST_VMC returns (decimal or 0x hex)", DefaultValueFactory = _ => $"0x{new VmcLimits().DrcIndex:X8}" };
    private static readonly Option<string?> Control = new("--control")
    { Description = "Control socket for vmcctl (mode 0600, same peers as the data socket); default <socket-path>.ctl, none with --fd unless given; 'none' disables it", HelpName = "PATH|none" };
    private static readonly Option<string?> Faults = new("--faults")
    { Description = "Misbehave as this faults file says, from the start (docs/faults.md); off by default", HelpName = "FILE" };
    private static readonly Option<string[]> AllowUid = new("--allow-uid")
    { Description = "Also serve front-ends running as this user (uid or name; repeatable). Root and vmcd's own uid always may", HelpName = "USER" };
    private static readonly Option<string[]> AllowGid = new("--allow-gid")
    { Description = "Also serve front-ends in this group, primary or supplementary (gid or name; repeatable)", HelpName = "GROUP" };
    private static readonly Option<string> Level = new("--log-level")
    { Description = "verbose, debug (one line per message), information (one line per session event), warning, error", HelpName = "LEVEL", DefaultValueFactory = _ => "information" };
    private static readonly Option<string> Format = new("--log-format")
    { Description = "text, or json (compact JSON, one event per line, for journald or Loki)", HelpName = "text|json", DefaultValueFactory = _ => "text" };
    private static readonly Option<bool> PrintCapabilities = new(PrintCapabilitiesOption)
    { Description = "Print the back-end's capabilities as JSON on stdout and exit (other options are ignored)" };

    /// <summary>
    /// Parses <paramref name="args"/>. Returns the exit code when vmcd must stop here (help, version,
    /// or a bad command line already reported on stderr); otherwise null and the checked settings.
    /// </summary>
    public static int? Parse(string[] args, out VmcdSettings settings)
    {
        settings = null!;
        var root = new RootCommand("vmcd: the hypervisor side of IBM's Virtual Management Channel, for QEMU's spapr-vmc device")
        {
            SocketPath, Fd, Control, Faults, MaxMtu, PoolSize, MaxHmcs, DrcIndex, AllowUid, AllowGid, Level, Format, PrintCapabilities,
        };
        VmcdSettings? parsed = null;
        root.SetAction(r => { parsed = Check(r); return parsed == null ? ExitUsage : 0; });
        ParseResult result = root.Parse(args);
        if (result.Errors.Count > 0) return Usage(result.Errors[0].Message.ReplaceLineEndings(" "));
        int rc = result.Invoke();
        if (parsed == null) return rc;     // --help, --version, or a value Check refused
        settings = parsed;
        return null;
    }

    private static VmcdSettings? Check(ParseResult r)
    {
        string drcText = r.GetValue(DrcIndex)!;
        if (!(drcText.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? uint.TryParse(drcText.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint drc)
                : uint.TryParse(drcText, NumberStyles.None, CultureInfo.InvariantCulture, out drc)))
        {
            Usage($"--drc-index {drcText} is not a 32-bit number (use decimal or 0x hex)");
            return null;
        }
        var limits = new VmcLimits
        {
            MaxMtu = r.GetValue(MaxMtu), PoolSize = r.GetValue(PoolSize), MaxHmcs = r.GetValue(MaxHmcs), DrcIndex = drc,
        };
        try { limits.Validate(); }
        catch (ArgumentOutOfRangeException e)
        {
            Usage($"--{OptionFor(e.ParamName)} {e.ActualValue}: {e.Message.Split(" (Parameter")[0].Split('\n')[0]}");
            return null;
        }
        string? path = r.GetValue(SocketPath);
        int? fd = r.GetValue(Fd);
        if (path != null && fd != null) { Usage("give either --socket-path PATH or --fd N, not both"); return null; }
        if (fd is < 0) { Usage($"--fd {fd}: not a file descriptor number"); return null; }
        if (path?.Length == 0) { Usage("--socket-path: empty path"); return null; }
        string? control = r.GetValue(Control);
        if (control?.Length == 0) { Usage("--control: empty path (give a path, or none)"); return null; }

        if (!TryParseName(r.GetValue(Level), out LogEventLevel level))
        {
            Usage($"--log-level {r.GetValue(Level)}: use verbose, debug, information, warning or error");
            return null;
        }
        if (!TryParseName(r.GetValue(Format), out LogFormat format))
        {
            Usage($"--log-format {r.GetValue(Format)}: use text or json");
            return null;
        }
        if (!PeerPolicy.TryCreate(r.GetValue(AllowUid) ?? [], r.GetValue(AllowGid) ?? [], out var peers, out string? error))
        {
            Usage(error!);
            return null;
        }
        string? faultsFile = r.GetValue(Faults);
        FaultPlan? plan = null;
        if (faultsFile != null)
        {
            try { plan = FaultPlan.Parse(File.ReadAllText(faultsFile)); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Usage($"--faults {faultsFile}: cannot read it ({e.Message})");
                return null;
            }
            catch (FormatException e)
            {
                Usage($"--faults {faultsFile}: {e.Message} (the format is in docs/faults.md)");
                return null;
            }
        }
        return new VmcdSettings(path, fd, limits, level, format, peers, control, plan, faultsFile);
    }

    /// <summary>An enum member by name, any case; numbers are not names.</summary>
    private static bool TryParseName<T>(string? text, out T value) where T : struct, Enum =>
        Enum.TryParse(text, ignoreCase: true, out value) && Enum.IsDefined(value) && !char.IsAsciiDigit(text![0]);

    private static string OptionFor(string? limitName) => limitName switch
    {
        nameof(VmcLimits.MaxMtu) => "max-mtu",
        nameof(VmcLimits.PoolSize) => "pool-size",
        nameof(VmcLimits.MaxHmcs) => "max-hmcs",
        _ => "limit",
    };

    private static int Usage(string message)
    {
        Console.Error.WriteLine($"vmcd: {message} (see vmcd --help)");
        return ExitUsage;
    }
}
