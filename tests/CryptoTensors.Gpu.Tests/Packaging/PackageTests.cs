using System.Diagnostics;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;
using System.Xml.Linq;

namespace CryptoTensors.Gpu.Tests.Packaging;

/// <summary>
/// <c>dotnet pack</c> of the four src projects (Release, a version of its own so that no package cache can hold a copy),
/// then what a user gets: the package contents, a fresh console app that restores CryptoTensors.Gpu (and the
/// TorchSharp and ILGPU packages) from that folder and round-trips an encrypted file through the native shim, and the
/// <c>ctensors</c> tool installed into a tool path. Slow (packing and a restore and build of the app: one to three
/// minutes on two cores); every child process has a generous timeout.
/// </summary>
[NonParallelizable]
[Category("Packaging")]
public class PackageTests
{
    private const string LibraryId = "CryptoTensors.Gpu";
    private const string ToolId = "ctensors";
    private const string IpsecMbSoname = "libIPSec_MB.so.1";
    private static readonly string[] PackageIds = [LibraryId, "CryptoTensors.Gpu.TorchSharp", "CryptoTensors.Gpu.ILGPU", ToolId];
    private static readonly string[] Projects = ["CryptoTensors.Gpu", "CryptoTensors.Gpu.TorchSharp", "CryptoTensors.Gpu.ILGPU", "CryptoTensors.Cli"];
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(10);

    private string _work = "";
    private string _feed = "";
    private string _version = "";
    private string _dotnet = "";

    [OneTimeSetUp]
    public void PackEveryProject()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            Assert.Ignore("the packages carry linux-x64 natives and are packed on Linux x64 only");

        _dotnet = FindDotnet();
        _work = Path.Combine(Path.GetTempPath(), "ctensors-pack-" + Guid.NewGuid().ToString("N")[..12]);
        _feed = Path.Combine(_work, "feed");
        Directory.CreateDirectory(_feed);
        // A version no cache can already hold: VersionPrefix from Directory.Build.props, a suffix of this run.
        var suffix = "pkgtest-t" + Guid.NewGuid().ToString("N")[..12];

        var clock = Stopwatch.StartNew();
        foreach (var project in Projects)
        {
            // The solution's restore (dotnet test restores every project the test project references, which is every
            // src project) wrote the assets files, so pack needs no restore of its own, in a fresh clone too.
            var result = Dotnet(TestPaths.RepoRoot, "pack", Path.Combine("src", project, project + ".csproj"),
                "-c", "Release", "--no-restore", "--disable-build-servers", "-nologo", "-o", _feed, "-p:VersionSuffix=" + suffix);
            Assert.That(result.Code, Is.Zero, $"dotnet pack {project} failed:\n{result.Output}");
        }
        TestContext.Progress.WriteLine($"packed {Projects.Length} projects in {clock.Elapsed.TotalSeconds:F0} s");

        var library = Directory.GetFiles(_feed, LibraryId + ".*.nupkg").Single(f => IdOf(f) == LibraryId);
        _version = Path.GetFileNameWithoutExtension(library)[(LibraryId.Length + 1)..];
        Assert.That(_version, Does.EndWith("-" + suffix), "the package version is VersionPrefix-VersionSuffix");
    }

    [OneTimeTearDown]
    public void RemoveWorkFolder()
    {
        if (_work.Length > 0 && Directory.Exists(_work))
        {
            try { Directory.Delete(_work, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    [Test]
    public void LibraryPackageCarriesTheNativeLibraries()
    {
        var entries = Entries(LibraryId);
        Assert.That(entries, Does.Contain("lib/net10.0/CryptoTensors.Gpu.dll"));
        Assert.That(entries, Does.Contain("lib/net10.0/CryptoTensors.Gpu.xml"), "XML documentation");
        Assert.That(entries, Does.Contain("runtimes/linux-x64/native/libctshim.so"));

        // libctaesgcm.so is built only where ipsec-mb is installed; the package carries it exactly when it was built.
        var aesGcmBuilt = File.Exists(Path.Combine(TestPaths.RepoRoot, "build", "native", "libctaesgcm.so"));
        Assert.That(entries.Contains("runtimes/linux-x64/native/libctaesgcm.so"), Is.EqualTo(aesGcmBuilt),
            $"libctaesgcm.so in the package iff build/native/libctaesgcm.so exists ({aesGcmBuilt})");
        Assert.That(entries.Where(e => e.EndsWith(".so", StringComparison.Ordinal) && !e.StartsWith("runtimes/linux-x64/native/", StringComparison.Ordinal)),
            Is.Empty, "natives only under runtimes/linux-x64/native/");
    }

    [Test]
    public void PackagesShareVersionAndMetadata()
    {
        var nuspecs = PackageIds.ToDictionary(id => id, Nuspec);
        string? Field(XElement metadata, string name) => metadata.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value;

        foreach (var (id, metadata) in nuspecs)
        {
            Assert.That(Field(metadata, "id"), Is.EqualTo(id));
            Assert.That(Field(metadata, "version"), Is.EqualTo(_version), id);
            Assert.That(Field(metadata, "description"), Is.Not.Null.And.Not.Empty, id);
            Assert.That(Field(metadata, "readme"), Is.EqualTo("README.md"), id);
            Assert.That(Entries(id), Does.Contain("README.md"), id);
            foreach (var shared in new[] { "authors", "license", "licenseUrl", "tags", "projectUrl" })
                Assert.That(Field(metadata, shared), Is.EqualTo(Field(nuspecs[LibraryId], shared)), $"{id}: {shared} differs from {LibraryId}'s");
        }

        // The integrations use CryptoTensors.Gpu's internals: exactly the version they were built with.
        foreach (var id in new[] { "CryptoTensors.Gpu.TorchSharp", "CryptoTensors.Gpu.ILGPU" })
        {
            var dependency = nuspecs[id].Descendants().Single(e => e.Name.LocalName == "dependency" && (string?)e.Attribute("id") == LibraryId);
            Assert.That((string?)dependency.Attribute("version"), Is.EqualTo($"[{_version}]"), id);
            Assert.That(Entries(id), Does.Contain($"lib/net10.0/{id}.dll"));
            Assert.That(Entries(id).Where(e => e.EndsWith(".so", StringComparison.Ordinal)), Is.Empty, $"{id} has no natives of its own");
        }
    }

    [Test]
    public void ToolPackageHasReadmeAndOnlyLinuxX64Natives()
    {
        var entries = Entries(ToolId);
        const string root = "tools/net10.0/any/";
        Assert.That(entries, Does.Contain("README.md"));
        Assert.That(entries, Does.Contain(root + "ctensors.dll"));
        Assert.That(entries, Does.Contain(root + "DotnetToolSettings.xml"));
        Assert.That(entries, Does.Contain(root + "libctshim.so"));
        Assert.That(entries, Does.Contain(root + "runtimes/linux-x64/native/libsodium.so"), "NSec needs libsodium");
        var foreign = entries.Where(e => e.StartsWith(root + "runtimes/", StringComparison.Ordinal)
            && !e.StartsWith(root + "runtimes/linux-x64/", StringComparison.Ordinal)).ToList();
        Assert.That(foreign, Is.Empty, "only linux-x64 natives");
        Assert.That(entries.Where(e => e.EndsWith(".dylib", StringComparison.Ordinal) || e.EndsWith("/libsodium.dll", StringComparison.Ordinal)
            || e.EndsWith("/libSkiaSharp.dll", StringComparison.Ordinal) || e.EndsWith("/LibTorchSharp.dll", StringComparison.Ordinal)), Is.Empty);
    }

    [Test]
    public void ConsumerRestoresThePackagesAndUsesTheNativeShim()
    {
        var app = Path.Combine(_work, "consumer");
        Directory.CreateDirectory(app);
        WriteConsumer(app);
        var data = Path.Combine(app, "data");
        Directory.CreateDirectory(data);

        var clock = Stopwatch.StartNew();
        var run = Dotnet(app, "run", "--disable-build-servers", "--", data);
        SkipIfFeedUnreachable(run);
        TestContext.Progress.WriteLine($"consumer restore, build and run: {clock.Elapsed.TotalSeconds:F0} s");
        Assert.That(run.Code, Is.Zero, run.Output);
        var lines = Parse(run.Output);
        Assert.Multiple(() =>
        {
            Assert.That(lines["library-version"], Does.StartWith(_version), "CryptoTensors.Gpu.dll comes from the package");
            Assert.That(lines["native-shim"], Is.EqualTo("True"), "libctshim.so loads from runtimes/linux-x64/native: " + lines["native-shim-error"]);
            Assert.That(lines["native-shim-path"], Does.EndWith("runtimes/linux-x64/native/libctshim.so"));
            Assert.That(lines["read-path"], Is.EqualTo("MemoryMapped"));
            Assert.That(lines["pinned-native"], Is.EqualTo("True"));
            Assert.That(lines["roundtrip"], Is.EqualTo("True"));
            Assert.That(lines["torchsharp"], Is.EqualTo("CryptoTensors.Gpu.TorchSharp"));
            Assert.That(lines["ilgpu"], Is.EqualTo("CryptoTensors.Gpu.ILGPU"));
        });

        var aesGcm = Path.Combine(app, "bin", "Debug", "net10.0", "runtimes", "linux-x64", "native", "libctaesgcm.so");
        if (!Entries(LibraryId).Contains("runtimes/linux-x64/native/libctaesgcm.so"))
        {
            // Not built where this was packed: the BCL does AES-GCM, and the reason says the library is not there.
            Assert.That(lines["ipsec-mb"], Is.EqualTo("False"));
            Assert.That(lines["ipsec-mb-reason"], Does.Contain("does not exist"));
            Assert.That(lines["aead"], Is.EqualTo("bcl"));
            return;
        }

        // The packaged library was found; where the CPU lacks VAES/AVX-512 it reports that instead of loading.
        Assert.That(File.Exists(aesGcm), Is.True, aesGcm);
        Assert.That(lines["ipsec-mb-reason"], Does.Not.Contain("does not exist"));
        Assert.That(lines["aead"], Is.EqualTo(lines["ipsec-mb"] == "True" ? "ipsec-mb-vaes" : "bcl"));

        // Without libIPSec_MB.so.1: the same library asking for a name no machine has (same length, so the ELF stays valid).
        var bytes = File.ReadAllBytes(aesGcm);
        var needed = Encoding.ASCII.GetBytes(IpsecMbSoname + "\0");
        var at = bytes.AsSpan().IndexOf(needed);
        Assert.That(at, Is.GreaterThanOrEqualTo(0), $"libctaesgcm.so names {IpsecMbSoname} (its DT_NEEDED, documented in the README)");
        Encoding.ASCII.GetBytes("libIPSec_MX.so.1").CopyTo(bytes, at);
        File.WriteAllBytes(aesGcm, bytes);
        var dll = Path.Combine(app, "bin", "Debug", "net10.0", "Consumer.dll");

        var fallback = Dotnet(app, dll, data);
        Assert.That(fallback.Code, Is.Zero, fallback.Output);
        var fallbackLines = Parse(fallback.Output);
        Assert.That(fallbackLines["ipsec-mb"], Is.EqualTo("False"));
        Assert.That(fallbackLines["ipsec-mb-reason"], Does.Contain("libIPSec_MX.so.1"), "the reason names the missing dependency");
        Assert.That(fallbackLines["aead"], Is.EqualTo("bcl"), "falls back to the BCL");
        Assert.That(fallbackLines["roundtrip"], Is.EqualTo("True"));

        var required = Dotnet(app, [dll, data], ("CRYPTOTENSORS_AEAD_BACKEND", "ipsec-mb"));
        Assert.That(required.Code, Is.Not.Zero, "ipsec-mb requested but unavailable is an error:\n" + required.Output);
        Assert.That(required.Output, Does.Contain("the ipsec-mb AES-GCM backend was requested but is unavailable").And.Contain("libIPSec_MX.so.1"));
        Assert.That(required.Output, Does.Not.Contain("roundtrip:"));
    }

    [Test]
    public void ToolInstallsIntoAToolPathAndRuns()
    {
        var tools = Path.Combine(_work, "tools");
        // The tool package has no dependencies: its own feed only, so this needs no network.
        var config = Path.Combine(_work, "tool-nuget.config");
        File.WriteAllText(config, NuGetConfig(Path.Combine(_work, "tool-packages"), [("local", _feed)], fallback: null));
        var install = Dotnet(_work, "tool", "install", ToolId, "--tool-path", tools, "--version", _version, "--configfile", config);
        Assert.That(install.Code, Is.Zero, install.Output);

        var ctensors = Path.Combine(tools, "ctensors");
        Assert.That(File.Exists(ctensors), Is.True, ctensors);
        var help = Run(ctensors, _work, ["--help"]);
        Assert.That(help.Code, Is.Zero, help.Output);
        Assert.That(help.Output, Does.Contain("keygen").And.Contain("encrypt"));

        // keygen signs with NSec, whose libsodium is the one linux-x64 native kept from its package.
        var keys = Path.Combine(_work, "keys");
        var keygen = Run(ctensors, _work, ["keygen", "--out-dir", keys]);
        Assert.That(keygen.Code, Is.Zero, keygen.Output);
        Assert.That(Directory.GetFiles(keys).Select(Path.GetFileName), Is.EquivalentTo(new[] { "enc.jwk", "sign.jwk", "sign.pub.jwk" }));
    }

    private void WriteConsumer(string app)
    {
        // Empty Directory.Build.* files stop MSBuild from looking above the temporary folder.
        foreach (var name in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props" })
            File.WriteAllText(Path.Combine(app, name), "<Project />\n");
        File.Copy(Path.Combine(TestPaths.RepoRoot, "global.json"), Path.Combine(app, "global.json"));
        // Our packages land in a package folder of this run; the dependencies (NSec, TorchSharp, ILGPU...) come from the
        // user's package folder when it holds them, else from nuget.org.
        File.WriteAllText(Path.Combine(app, "nuget.config"), NuGetConfig(Path.Combine(app, "packages"),
            [("local", _feed), ("nuget.org", "https://api.nuget.org/v3/index.json")], UserPackageFolder()));
        File.WriteAllText(Path.Combine(app, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <!-- TorchSharp 0.107.0 asks for SharpZipLib 1.4.0 / SkiaSharp 2.88.6; the feed serves 1.4.1 / 2.88.9. -->
                <NoWarn>$(NoWarn);NU1603</NoWarn>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="CryptoTensors.Gpu" Version="{_version}" />
                <PackageReference Include="CryptoTensors.Gpu.TorchSharp" Version="{_version}" />
                <PackageReference Include="CryptoTensors.Gpu.ILGPU" Version="{_version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), """
            using System.Reflection;
            using CryptoTensors.Gpu.Crypto;
            using CryptoTensors.Gpu.Format;
            using CryptoTensors.Gpu.Keys;
            using CryptoTensors.Gpu.Loading;
            using CryptoTensors.Gpu.Loading.Native;
            using CryptoTensors.Gpu.Reading;
            using CryptoTensors.Gpu.Writing;

            var library = typeof(CryptoTensorsReader).Assembly;
            Console.WriteLine($"library-version: {library.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion}");
            Console.WriteLine($"native-shim: {PinnedHostBuffer.NativeShimAvailable}");
            Console.WriteLine($"native-shim-error: {PinnedHostBuffer.NativeShimLoadError}");
            var shim = File.ReadLines("/proc/self/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Where(f => f.Length >= 6 && f[5].EndsWith("/libctshim.so", StringComparison.Ordinal)).Select(f => f[5]).FirstOrDefault();
            Console.WriteLine($"native-shim-path: {shim}");
            Console.WriteLine($"ipsec-mb: {AeadBackends.IpsecMbAvailable}");
            Console.WriteLine($"ipsec-mb-reason: {AeadBackends.IpsecMbUnavailableReason}");
            Console.WriteLine($"read-path: {ReadPaths.Resolve(ReadPath.Auto)}");
            Console.WriteLine($"torchsharp: {typeof(CryptoTensors.Gpu.TorchSharp.TorchLoader).Assembly.GetName().Name}");
            Console.WriteLine($"ilgpu: {typeof(CryptoTensors.Gpu.ILGPU.IlgpuLoader).Assembly.GetName().Name}");

            var data = new byte[(3 << 20) + 5];   // two 2 MiB chunks, the second partial
            for (var i = 0; i < data.Length; i++) data[i] = (byte)(i * 7 + 3);
            var path = Path.Combine(args[0], "model.cryptotensors");
            using var master = MasterKey.Generate();
            using var signer = SigningKey.Generate();
            CryptoTensorsWriter.Write(path, [TensorSource.FromMemory("w", Dtype.U8, [(ulong)data.Length], data)],
                new WriterOptions { MasterKey = master, SigningKey = signer });
            using var reader = CryptoTensorsReader.Open(path,
                new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, RequireEncrypted = true });
            Console.WriteLine($"aead: {AeadBackends.ActiveName()}");
            using var model = ModelLoader.Load(reader);
            Console.WriteLine($"pinned-native: {model.Buffer.IsNative}");
            Console.WriteLine($"roundtrip: {model.GetSpan("w").SequenceEqual(data)}");
            """);
    }

    private static string NuGetConfig(string packages, (string Key, string Url)[] sources, string? fallback)
    {
        var x = new XElement("configuration",
            new XElement("config", new XElement("add", new XAttribute("key", "globalPackagesFolder"), new XAttribute("value", packages))),
            new XElement("packageSources", new XElement("clear"),
                sources.Select(s => new XElement("add", new XAttribute("key", s.Key), new XAttribute("value", s.Url)))),
            new XElement("fallbackPackageFolders", new XElement("clear"),
                fallback is null ? null : new XElement("add", new XAttribute("key", "user"), new XAttribute("value", fallback))));
        return x.ToString();
    }

    /// <summary>The user's NuGet package folder (NUGET_PACKAGES or ~/.nuget/packages) when it exists.</summary>
    private static string? UserPackageFolder()
    {
        var env = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        var folder = string.IsNullOrEmpty(env)
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages")
            : env;
        return Directory.Exists(folder) ? folder : null;
    }

    private static void SkipIfFeedUnreachable((int Code, string Output) result)
    {
        if (result.Code != 0 && result.Output.Contains("NU1301", StringComparison.Ordinal))
            Assert.Ignore("nuget.org is unreachable (NU1301), so the consumer's dependencies cannot be restored:\n" + result.Output);
    }

    private static Dictionary<string, string> Parse(string output)
        => output.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Contains(": ", StringComparison.Ordinal))
            .Select(l => (Key: l[..l.IndexOf(": ", StringComparison.Ordinal)], Value: l[(l.IndexOf(": ", StringComparison.Ordinal) + 2)..]))
            .GroupBy(p => p.Key).ToDictionary(g => g.Key, g => g.Last().Value);

    private string PackagePath(string id)
    {
        var path = Path.Combine(_feed, $"{id}.{_version}.nupkg");
        Assert.That(File.Exists(path), Is.True, $"{id} was not packed: {path}");
        return path;
    }

    private HashSet<string> Entries(string id)
    {
        using var zip = ZipFile.OpenRead(PackagePath(id));
        return zip.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
    }

    private XElement Nuspec(string id)
    {
        using var zip = ZipFile.OpenRead(PackagePath(id));
        using var stream = zip.GetEntry(id + ".nuspec")!.Open();
        return XDocument.Load(stream).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static string IdOf(string nupkg)
    {
        var name = Path.GetFileNameWithoutExtension(nupkg);
        return PackageIds.OrderByDescending(id => id.Length).First(id => name.StartsWith(id + ".", StringComparison.Ordinal));
    }

    private (int Code, string Output) Dotnet(string directory, params string[] args) => Run(_dotnet, directory, args);

    private (int Code, string Output) Dotnet(string directory, string[] args, params (string Name, string Value)[] environment)
        => Run(_dotnet, directory, args, environment);

    /// <summary>
    /// Runs a program with stdout and stderr merged, in an environment cleaned of the outer build's MSBuild variables,
    /// without build servers or node reuse (nothing outlives the test), and with DOTNET_ROOT set for apphosts.
    /// </summary>
    private (int Code, string Output) Run(string program, string directory, string[] args, params (string Name, string Value)[] environment)
    {
        var start = ChildProcess.Start(program, directory, args);
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        start.Environment["DOTNET_CLI_UI_LANGUAGE"] = "en";
        start.Environment["DOTNET_ROOT"] = Path.GetDirectoryName(_dotnet);
        start.Environment.Remove("CRYPTOTENSORS_AEAD_BACKEND");
        foreach (var (name, value) in environment) start.Environment[name] = value;
        return ChildProcess.Run(start, CommandTimeout);
    }

    /// <summary>The dotnet executable that runs these tests (its root also holds the SDK that built them).</summary>
    private static string FindDotnet()
    {
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host)) return new FileInfo(host).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? host;
        // .../shared/Microsoft.NETCore.App/<version>/System.Private.CoreLib.dll -> ...
        var root = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(typeof(object).Assembly.Location)!, "..", "..", ".."));
        var dotnet = Path.Combine(root, "dotnet");
        if (File.Exists(dotnet)) return dotnet;
        Assert.Fail($"dotnet not found (DOTNET_HOST_PATH unset, no {dotnet})");
        return "";
    }
}
