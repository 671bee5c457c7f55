using System.Globalization;
using System.Text;

namespace CryptoTensors.Gpu.Policy.Rego;

internal enum TokenKind
{
    Eof,
    Ident,
    Number,
    String,
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    LParen,
    RParen,
    Comma,
    Semicolon,
    Dot,
    Colon,
    Assign,
    Unify,
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Pipe,
    Amp,
}

/// <summary>
/// One token. <see cref="Text"/> is the identifier, the raw number, or the decoded string.
/// <see cref="Adjacent"/> is true when no whitespace or comment separates it from the previous token
/// (references like <c>a.b[c]</c> and calls <c>f(x)</c> must be written without gaps).
/// </summary>
internal readonly record struct Token(TokenKind Kind, string Text, int Line, int Col, int EndLine, bool Adjacent)
{
    public string Describe() => Kind switch
    {
        TokenKind.Eof => "end of file",
        TokenKind.Ident => $"'{Text}'",
        TokenKind.Number => $"number {Text}",
        TokenKind.String => "string",
        _ => $"'{Lexer.Spell(Kind)}'",
    };
}

/// <summary>Splits Rego source into tokens. Newlines are whitespace; the parser uses line numbers to separate statements.</summary>
internal static class Lexer
{
    public static string Spell(TokenKind k) => k switch
    {
        TokenKind.LBrace => "{",
        TokenKind.RBrace => "}",
        TokenKind.LBrack => "[",
        TokenKind.RBrack => "]",
        TokenKind.LParen => "(",
        TokenKind.RParen => ")",
        TokenKind.Comma => ",",
        TokenKind.Semicolon => ";",
        TokenKind.Dot => ".",
        TokenKind.Colon => ":",
        TokenKind.Assign => ":=",
        TokenKind.Unify => "=",
        TokenKind.Eq => "==",
        TokenKind.Neq => "!=",
        TokenKind.Lt => "<",
        TokenKind.Lte => "<=",
        TokenKind.Gt => ">",
        TokenKind.Gte => ">=",
        TokenKind.Plus => "+",
        TokenKind.Minus => "-",
        TokenKind.Star => "*",
        TokenKind.Slash => "/",
        TokenKind.Percent => "%",
        TokenKind.Pipe => "|",
        TokenKind.Amp => "&",
        _ => k.ToString(),
    };

    public static List<Token> Tokenize(string src)
    {
        var tokens = new List<Token>(src.Length / 4 + 4);
        var i = 0;
        var line = 1;
        var lineStart = 0;
        var adjacent = false;
        if (src.Length > 0 && src[0] == '\uFEFF') i = 1;

        while (true)
        {
            // Whitespace and comments.
            var sawSpace = false;
            while (i < src.Length)
            {
                var c = src[i];
                if (c == '\n')
                {
                    i++;
                    line++;
                    lineStart = i;
                    sawSpace = true;
                }
                else if (c is ' ' or '\t' or '\r')
                {
                    i++;
                    sawSpace = true;
                }
                else if (c == '#')
                {
                    while (i < src.Length && src[i] != '\n') i++;
                    sawSpace = true;
                }
                else
                {
                    break;
                }
            }
            adjacent = tokens.Count > 0 && !sawSpace;
            var col = i - lineStart + 1;
            if (i >= src.Length)
            {
                tokens.Add(new Token(TokenKind.Eof, "", line, col, line, adjacent));
                return tokens;
            }

            var ch = src[i];
            if (IsIdentStart(ch))
            {
                var start = i;
                while (i < src.Length && IsIdentPart(src[i])) i++;
                tokens.Add(new Token(TokenKind.Ident, src[start..i], line, col, line, adjacent));
                continue;
            }
            if (ch is >= '0' and <= '9')
            {
                var start = i;
                while (i < src.Length && char.IsAsciiDigit(src[i])) i++;
                if (i - start > 1 && src[start] == '0')
                    throw RegoErrors.Unsupported(line, col, "invalid number: leading zero");
                if (i + 1 < src.Length && src[i] == '.' && char.IsAsciiDigit(src[i + 1]))
                {
                    i++;
                    while (i < src.Length && char.IsAsciiDigit(src[i])) i++;
                }
                if (i < src.Length && src[i] is 'e' or 'E')
                {
                    var j = i + 1;
                    if (j < src.Length && src[j] is '+' or '-') j++;
                    if (j >= src.Length || !char.IsAsciiDigit(src[j]))
                        throw RegoErrors.Unsupported(line, col, "invalid number: missing exponent digits");
                    while (j < src.Length && char.IsAsciiDigit(src[j])) j++;
                    i = j;
                }
                if (i < src.Length && IsIdentStart(src[i]))
                    throw RegoErrors.Unsupported(line, col, $"invalid number '{src[start..(i + 1)]}'");
                tokens.Add(new Token(TokenKind.Number, src[start..i], line, col, line, adjacent));
                continue;
            }
            if (ch == '"')
            {
                i++;
                var sb = new StringBuilder();
                while (true)
                {
                    if (i >= src.Length || src[i] == '\n')
                        throw RegoErrors.Unsupported(line, col, "unterminated string");
                    var c = src[i];
                    if (c == '"')
                    {
                        i++;
                        break;
                    }
                    if (c != '\\')
                    {
                        sb.Append(c);
                        i++;
                        continue;
                    }
                    var escCol = i - lineStart + 1;
                    if (i + 1 >= src.Length) throw RegoErrors.Unsupported(line, col, "unterminated string");
                    var e = src[i + 1];
                    i += 2;
                    switch (e)
                    {
                        case '"': sb.Append('"'); break;
                        case '\\': sb.Append('\\'); break;
                        case '/': sb.Append('/'); break;
                        case 'b': sb.Append('\b'); break;
                        case 'f': sb.Append('\f'); break;
                        case 'n': sb.Append('\n'); break;
                        case 'r': sb.Append('\r'); break;
                        case 't': sb.Append('\t'); break;
                        case 'u':
                            if (i + 4 > src.Length || !ushort.TryParse(src.AsSpan(i, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var u))
                                throw RegoErrors.Unsupported(line, escCol, "invalid \\u escape in string");
                            sb.Append((char)u);
                            i += 4;
                            break;
                        default:
                            throw RegoErrors.Unsupported(line, escCol, $"invalid escape '\\{e}' in string");
                    }
                }
                tokens.Add(new Token(TokenKind.String, sb.ToString(), line, col, line, adjacent));
                continue;
            }
            if (ch == '`')
            {
                var startLine = line;
                var start = ++i;
                while (i < src.Length && src[i] != '`')
                {
                    if (src[i] == '\n')
                    {
                        line++;
                        lineStart = i + 1;
                    }
                    i++;
                }
                if (i >= src.Length) throw RegoErrors.Unsupported(startLine, col, "unterminated raw string");
                tokens.Add(new Token(TokenKind.String, src[start..i], startLine, col, line, adjacent));
                i++;
                continue;
            }

            var next = i + 1 < src.Length ? src[i + 1] : '\0';
            TokenKind kind;
            var len = 1;
            switch (ch)
            {
                case '{': kind = TokenKind.LBrace; break;
                case '}': kind = TokenKind.RBrace; break;
                case '[': kind = TokenKind.LBrack; break;
                case ']': kind = TokenKind.RBrack; break;
                case '(': kind = TokenKind.LParen; break;
                case ')': kind = TokenKind.RParen; break;
                case ',': kind = TokenKind.Comma; break;
                case ';': kind = TokenKind.Semicolon; break;
                case '.': kind = TokenKind.Dot; break;
                case ':':
                    if (next == '=') (kind, len) = (TokenKind.Assign, 2);
                    else kind = TokenKind.Colon;
                    break;
                case '=':
                    if (next == '=') (kind, len) = (TokenKind.Eq, 2);
                    else kind = TokenKind.Unify;
                    break;
                case '!':
                    if (next != '=') throw RegoErrors.Unsupported(line, col, "unexpected character '!'");
                    (kind, len) = (TokenKind.Neq, 2);
                    break;
                case '<':
                    if (next == '=') (kind, len) = (TokenKind.Lte, 2);
                    else kind = TokenKind.Lt;
                    break;
                case '>':
                    if (next == '=') (kind, len) = (TokenKind.Gte, 2);
                    else kind = TokenKind.Gt;
                    break;
                case '+': kind = TokenKind.Plus; break;
                case '-': kind = TokenKind.Minus; break;
                case '*': kind = TokenKind.Star; break;
                case '/': kind = TokenKind.Slash; break;
                case '%': kind = TokenKind.Percent; break;
                case '|': kind = TokenKind.Pipe; break;
                case '&': kind = TokenKind.Amp; break;
                default:
                    var shown = char.IsControl(ch) ? $"U+{(int)ch:X4}" : ch.ToString();
                    throw RegoErrors.Unsupported(line, col, $"unexpected character '{shown}'");
            }
            tokens.Add(new Token(kind, src.Substring(i, len), line, col, line, adjacent));
            i += len;
        }
    }

    private static bool IsIdentStart(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_';

    private static bool IsIdentPart(char c) => IsIdentStart(c) || c is >= '0' and <= '9';
}
