#!/usr/bin/env python3
"""The typedef names pg_bsd_indent must know, one list per C file: the
file's own typedefs, those of the project's headers, and the libraries'
(PostgreSQL's server headers for the extension's files) that the file uses
as types.  Per file, because file-local names (a struct "layer" in one file)
are variables in others.

    typedefs.py PG_INCLUDEDIR_SERVER OUTDIR FILE...   writes OUTDIR/<FILE with / as __>.list
"""
import glob, os, re, sys

LIBC = {'size_t', 'ssize_t', 'int8_t', 'int16_t', 'int32_t', 'int64_t', 'uint8_t', 'uint16_t',
        'uint32_t', 'uint64_t', 'uintptr_t', 'intptr_t', 'FILE', 'pid_t', 'off_t', 'va_list',
        'pthread_t', 'pthread_mutex_t', 'pthread_cond_t', 'pthread_once_t', 'socklen_t', 'time_t',
        'sigset_t', 'mode_t', 'DIR', '__m128', '__m128i', '__m256', '__m256i', '__m512', '__m512i',
        '__m256bh', '__m512bh', '__mmask8', '__mmask16', '__mmask32', '__mmask64', 'json_t',
        'json_error_t', 'json_int_t', 'CURL', 'CURLcode', 'CURLM', 'pcre2_code', 'pcre2_match_data',
        'utf8proc_int32_t', 'utf8proc_uint8_t', 'utf8proc_ssize_t', 'EVP_MD_CTX', 'cudaStream_t',
        'cudaError_t', 'cudaEvent_t', 'cudaGraph_t', 'cudaGraphExec_t', 'cublasHandle_t',
        'cublasStatus_t', 'cublasLtHandle_t'}


def typedef_names(text):
    names = set()
    for m in re.finditer(r'^[ \t]*typedef\b', text, re.M):
        i = m.end()
        depth = 0
        j = i
        while j < len(text):
            c = text[j]
            if c == '{':
                depth += 1
            elif c == '}':
                depth -= 1
            elif c == ';' and depth == 0:
                break
            j += 1
        decl = text[i:j]
        fp = re.search(r'\(\s*\*\s*(\w+)\s*\)\s*\(', decl)
        if fp:
            names.add(fp.group(1))
            continue
        decl = re.sub(r'\{.*\}', ' ', decl, flags=re.S)
        last = re.search(r'(\w+)\s*(\[[^\]]*\])*\s*$', decl)
        if last:
            names.add(last.group(1))
    return names


def code_only(text):
    """The code alone: no comments, no string or character literals."""
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'//[^\n]*', ' ', text)
    text = re.sub(r'"(\\.|[^"\\\n])*"', '""', text)
    return re.sub(r"'(\\.|[^'\\\n])*'", "''", text)


def used_as_variable(name, code):
    return re.search(r'(->|\.)\s*' + name + r'\b|\b' + name +
                     r'\s*(->|\.\w|=[^=]|\[|;|,\s*\w+\s*[,)])', code) is not None


def main():
    pg_inc, outdir, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    headers = [h for h in glob.glob('src/**/*.h', recursive=True) + glob.glob('kernels/*.h') +
               glob.glob('kernels/*.cuh')]
    project = set()
    for h in headers:
        project |= typedef_names(open(h, errors='replace').read())
    pg = set()
    for h in glob.glob(f'{pg_inc}/**/*.h', recursive=True):
        pg |= typedef_names(open(h, errors='replace').read())
    os.makedirs(outdir, exist_ok=True)
    for f in files:
        text = open(f, errors='replace').read()
        own = typedef_names(text)
        code = code_only(text)
        words = set(re.findall(r'\b[A-Za-z_]\w*\b', code))
        libs = LIBC | (pg if f.startswith('src/') and f.count('/') == 1 else set())
        keep = set(own)
        for n in ((project | libs) & words) - own:
            if not used_as_variable(n, code):
                keep.add(n)
        with open(os.path.join(outdir, f.replace('/', '__') + '.list'), 'w') as out:
            out.write('\n'.join(sorted(keep)) + '\n')


main()
