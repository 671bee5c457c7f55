using System.Runtime.CompilerServices;
using System.Buffers;

namespace CryptoTensors.Gpu.Format;

/// <summary>An <see cref="IBufferWriter{T}"/> over arrays rented from <see cref="ArrayPool{T}.Shared"/>, returned on dispose. For non-secret bytes only (not cleared).</summary>
internal sealed class PooledBufferWriter : IBufferWriter<byte>, IDisposable
{
    private byte[] _buffer;
    private int _written;

    public PooledBufferWriter(int initialCapacity) => _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(initialCapacity, 256));

    // Comparing mode (see Comparing): what is written is checked against an expected byte stream instead of kept.
    private readonly byte[]? _expected;
    private readonly int _firstStart, _firstLength, _secondStart, _secondLength;
    private long _position;
    private bool _mismatch;

    private PooledBufferWriter(byte[] expected, int firstStart, int firstLength, int secondStart, int secondLength)
    {
        _buffer = ArrayPool<byte>.Shared.Rent(64 << 10);
        _expected = expected;
        (_firstStart, _firstLength, _secondStart, _secondLength) = (firstStart, firstLength, secondStart, secondLength);
    }

    /// <summary>
    /// A writer that keeps nothing: it compares every byte written, in order, against
    /// <c>expected[firstStart..+firstLength] ++ expected[secondStart..+secondLength]</c>; <see cref="MatchesExpected"/> then
    /// tells whether exactly those bytes, all of them and no more, were written. Memory: a 64 KiB scratch, whatever the length.
    /// </summary>
    internal static PooledBufferWriter Comparing(byte[] expected, int firstStart, int firstLength, int secondStart, int secondLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstStart);
        ArgumentOutOfRangeException.ThrowIfNegative(firstLength);
        ArgumentOutOfRangeException.ThrowIfNegative(secondStart);
        ArgumentOutOfRangeException.ThrowIfNegative(secondLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)firstStart + firstLength, expected.Length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)secondStart + secondLength, expected.Length);
        return new PooledBufferWriter(expected, firstStart, firstLength, secondStart, secondLength);
    }

    /// <summary>In comparing mode: every byte written equalled the expected stream, and all of it was written.</summary>
    internal bool MatchesExpected
    {
        get
        {
            if (_expected is null) throw new InvalidOperationException("not a comparing writer");
            Flush();
            return !_mismatch && _position == (long)_firstLength + _secondLength;
        }
    }

    /// <summary>Compares the pending scratch bytes and empties the scratch (comparing mode).</summary>
    private void Flush()
    {
        if (_written == 0) return;
        Compare(_buffer.AsSpan(0, _written));
        _written = 0;
    }

    private void Compare(ReadOnlySpan<byte> bytes)
    {
        if (_mismatch) return;
        var total = (long)_firstLength + _secondLength;
        if (_position + bytes.Length > total)
        {
            _mismatch = true;
            return;
        }
        if (_position < _firstLength)
        {
            var n = (int)Math.Min(bytes.Length, _firstLength - _position);
            if (!bytes[..n].SequenceEqual(_expected!.AsSpan(_firstStart + (int)_position, n))) _mismatch = true;
            _position += n;
            bytes = bytes[n..];
        }
        if (bytes.Length > 0)
        {
            var at = (int)(_position - _firstLength);
            if (!bytes.SequenceEqual(_expected!.AsSpan(_secondStart + at, bytes.Length))) _mismatch = true;
            _position += bytes.Length;
        }
    }

    public ReadOnlySpan<byte> WrittenSpan => _expected is null ? _buffer.AsSpan(0, _written) : throw new InvalidOperationException("a comparing writer keeps no bytes");

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Advance(int count)
    {
        if (count < 0 || count > _buffer.Length - _written) throw new ArgumentOutOfRangeException(nameof(count));
        _written += count;
    }

    /// <summary>Appends <paramref name="bytes"/>: a direct call, where the <see cref="BuffersExtensions.Write{T}"/> extension goes through the interface twice.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Write(ReadOnlySpan<byte> bytes)
    {
        if (_expected is not null && bytes.Length > 256)
        {
            // Comparing mode: long runs (the stored metadata values) are compared where they lie, never copied.
            Flush();
            Compare(bytes);
            return;
        }
        Ensure(bytes.Length);
        bytes.CopyTo(_buffer.AsSpan(_written));
        _written += bytes.Length;
    }

    /// <summary>Appends the decimal digits of <paramref name="value"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void WriteNumber(ulong value)
    {
        Ensure(20);
        System.Buffers.Text.Utf8Formatter.TryFormat(value, _buffer.AsSpan(_written), out var n);
        _written += n;
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsMemory(_written);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsSpan(_written);
    }

    private void Ensure(int sizeHint)
    {
        var need = Math.Max(sizeHint, 1);
        if (_buffer.Length - _written >= need) return;
        if (_expected is not null)
        {
            Flush();
            if (_buffer.Length >= need) return;
        }
        var grown = ArrayPool<byte>.Shared.Rent(checked(Math.Max(_buffer.Length * 2, _written + need)));
        _buffer.AsSpan(0, _written).CopyTo(grown);
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = grown;
    }

    public void Dispose()
    {
        var b = _buffer;
        _buffer = [];
        _written = 0;
        if (b.Length > 0) ArrayPool<byte>.Shared.Return(b);
    }
}
