#!/usr/bin/env python3
"""Writes inputs/data/code_problems.jsonl: easy stdin/stdout programming problems for the
`code` environment, each with a reference solution and test cases.

Every fifth problem is marked "split": "eval" (held out), the rest "train". Every expected output comes from an oracle written here in plain Python (a function of the
input text), independently of the reference program; the script then runs every reference
program with /usr/bin/python3 on every test and refuses to write the file unless all match.

    python3 inputs/data/make_code_problems.py [--check]   (--check: verify the existing file)
"""
import json
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "code_problems.jsonl")
PY = "/usr/bin/python3"


def nums(text):
    return [int(t) for t in text.split()]


def yn(b):
    return "YES" if b else "NO"


def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def rle(s):
    out, i = [], 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out.append(f"{s[i]}{j - i}")
        i = j
    return "".join(out)


def balanced(s):
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for c in s:
        if c in "([{":
            stack.append(c)
        elif c in pairs:
            if not stack or stack.pop() != pairs[c]:
                return False
    return not stack


def collatz(n):
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def caesar(k, text):
    def shift(c):
        if c.isascii() and c.isalpha():
            base = ord("a") if c.islower() else ord("A")
            return chr(base + (ord(c) - base + k) % 26)
        return c
    return "".join(shift(c) for c in text)


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def transpose(text):
    lines = text.strip().split("\n")
    r, c = map(int, lines[0].split())
    rows = [lines[1 + i].split() for i in range(r)]
    return "\n".join(" ".join(rows[i][j] for i in range(r)) for j in range(c))


def fizzbuzz(n):
    out = []
    for i in range(1, n + 1):
        out.append("FizzBuzz" if i % 15 == 0 else "Fizz" if i % 3 == 0 else "Buzz" if i % 5 == 0 else str(i))
    return "\n".join(out)


def second_largest(text):
    v = sorted(set(nums(text.split("\n", 1)[1])), reverse=True)
    return str(v[1]) if len(v) >= 2 else "NONE"


def list_input(v):
    return f"{len(v)}\n{' '.join(map(str, v))}\n"


# (name, prompt, reference program, oracle(input) -> output, [inputs])
PROBLEMS = [
    ("sum", "Read two integers a and b on one line, separated by a space. Print a + b.",
     "a, b = map(int, input().split())\nprint(a + b)\n",
     lambda s: str(sum(nums(s))), ["1 2\n", "-5 5\n", "1000000000 1000000000\n", "0 -7\n"]),
    ("product", "Read two integers a and b on one line. Print their product.",
     "a, b = map(int, input().split())\nprint(a * b)\n",
     lambda s: str(nums(s)[0] * nums(s)[1]), ["3 4\n", "-2 8\n", "0 99\n", "123456 654321\n"]),
    ("maximum", "The first line holds n, the second line n integers. Print the largest of them.",
     "input()\nprint(max(map(int, input().split())))\n",
     lambda s: str(max(nums(s.split("\n", 1)[1]))),
     [list_input([3, 9, 2]), list_input([-4, -2, -9]), list_input([7]), list_input([5, 5, 1, 5])]),
    ("reverse", "Read one line of text and print it reversed.",
     "print(input()[::-1])\n",
     lambda s: s.rstrip("\n")[::-1], ["hello\n", "a\n", "racecar\n", "abc def\n"]),
    ("vowels", "Read one line of lowercase text. Print how many vowels (a, e, i, o, u) it holds.",
     "print(sum(c in 'aeiou' for c in input()))\n",
     lambda s: str(sum(c in "aeiou" for c in s)), ["hello world\n", "rhythm\n", "aeiou\n", "programming is fun\n"]),
    ("factorial", "Read an integer n (0 <= n <= 20). Print n! (the factorial of n).",
     "import math\nprint(math.factorial(int(input())))\n",
     lambda s: str(math.factorial(nums(s)[0])), ["0\n", "5\n", "10\n", "20\n"]),
    ("fibonacci", "Read n (0 <= n <= 90). Print the n-th Fibonacci number, where F(0) = 0 and F(1) = 1.",
     "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a)\n",
     lambda s: str(fib(nums(s)[0])), ["0\n", "1\n", "10\n", "90\n"]),
    ("prime", "Read an integer n (1 <= n <= 10^9). Print YES if n is prime, otherwise NO.",
     "n = int(input())\nok = n >= 2\nd = 2\nwhile d * d <= n and ok:\n    if n % d == 0:\n        ok = False\n"
     "    d += 1\nprint('YES' if ok else 'NO')\n",
     lambda s: yn(is_prime(nums(s)[0])), ["1\n", "2\n", "91\n", "1000000007\n"]),
    ("sort", "The first line holds n, the second n integers. Print them in increasing order, separated by spaces.",
     "input()\nprint(*sorted(map(int, input().split())))\n",
     lambda s: " ".join(map(str, sorted(nums(s.split("\n", 1)[1])))),
     [list_input([3, 1, 2]), list_input([5]), list_input([-1, 10, -20, 0]), list_input([2, 2, 1, 1])]),
    ("palindrome", "Read one word. Print YES if it reads the same backwards, otherwise NO.",
     "w = input().strip()\nprint('YES' if w == w[::-1] else 'NO')\n",
     lambda s: yn(s.strip() == s.strip()[::-1]), ["level\n", "hello\n", "a\n", "abba\n"]),
    ("digit_sum", "Read a non-negative integer n. Print the sum of its decimal digits.",
     "print(sum(int(c) for c in input().strip()))\n",
     lambda s: str(sum(int(c) for c in s.strip())), ["0\n", "12345\n", "999999999999\n", "1000\n"]),
    ("gcd", "Read two positive integers a and b. Print their greatest common divisor.",
     "import math\na, b = map(int, input().split())\nprint(math.gcd(a, b))\n",
     lambda s: str(math.gcd(*nums(s))), ["12 18\n", "7 13\n", "100 10\n", "1071 462\n"]),
    ("fizzbuzz", "Read n. For i from 1 to n print one line: FizzBuzz if i is divisible by 15, Fizz if by 3, "
     "Buzz if by 5, else i itself.",
     "n = int(input())\nfor i in range(1, n + 1):\n    if i % 15 == 0:\n        print('FizzBuzz')\n"
     "    elif i % 3 == 0:\n        print('Fizz')\n    elif i % 5 == 0:\n        print('Buzz')\n"
     "    else:\n        print(i)\n",
     lambda s: fizzbuzz(nums(s)[0]), ["1\n", "5\n", "15\n", "20\n"]),
    ("word_count", "Read one line. Print how many words it holds (words are separated by spaces).",
     "print(len(input().split()))\n",
     lambda s: str(len(s.split())), ["hello world\n", "one\n", "  spaced   out   words  \n", "a b c d e f\n"]),
    ("fahrenheit", "Read an integer temperature C in degrees Celsius. Print it in degrees Fahrenheit "
     "(C * 9 / 5 + 32) with exactly one digit after the decimal point.",
     "c = int(input())\nprint(f'{c * 9 / 5 + 32:.1f}')\n",
     lambda s: f"{nums(s)[0] * 9 / 5 + 32:.1f}", ["0\n", "100\n", "-40\n", "37\n"]),
    ("second_largest", "The first line holds n, the second n integers. Print the second largest distinct value, "
     "or NONE if all values are equal.",
     "input()\nv = sorted(set(map(int, input().split())), reverse=True)\nprint(v[1] if len(v) > 1 else 'NONE')\n",
     second_largest, [list_input([1, 2, 3]), list_input([5, 5, 5]), list_input([10, 9, 10, 8]), list_input([-3, -1])]),
    ("upper", "Read one line and print it in upper case.",
     "print(input().upper())\n",
     lambda s: s.rstrip("\n").upper(), ["hello\n", "Mixed Case 123\n", "ALREADY\n", "x\n"]),
    ("count_char", "The first line holds a string s, the second a single character c. Print how many times c "
     "occurs in s.",
     "s = input()\nc = input()\nprint(s.count(c))\n",
     lambda s: str(s.split("\n")[0].count(s.split("\n")[1])), ["banana\na\n", "hello\nz\n", "aaaa\na\n",
                                                               "mississippi\ns\n"]),
    ("triangular", "Read n (1 <= n <= 10^6). Print 1 + 2 + ... + n.",
     "n = int(input())\nprint(n * (n + 1) // 2)\n",
     lambda s: str(sum(range(1, nums(s)[0] + 1))), ["1\n", "10\n", "100\n", "1000000\n"]),
    ("min_max", "The first line holds n, the second n integers. Print the smallest and the largest, separated "
     "by a space.",
     "input()\nv = list(map(int, input().split()))\nprint(min(v), max(v))\n",
     lambda s: f"{min(nums(s.split(chr(10), 1)[1]))} {max(nums(s.split(chr(10), 1)[1]))}",
     [list_input([3, 1, 2]), list_input([7]), list_input([-5, 5, 0]), list_input([4, 4])]),
    ("binary", "Read a non-negative integer n. Print it in binary, without leading zeros (0 prints 0).",
     "print(bin(int(input()))[2:])\n",
     lambda s: format(nums(s)[0], "b"), ["0\n", "5\n", "255\n", "1024\n"]),
    ("distinct", "The first line holds n, the second n integers. Print how many distinct values there are.",
     "input()\nprint(len(set(input().split())))\n",
     lambda s: str(len(set(nums(s.split("\n", 1)[1])))),
     [list_input([1, 2, 2, 3]), list_input([4]), list_input([9, 9, 9]), list_input([1, 2, 3, 4, 5])]),
    ("stairs", "Read n. Print n lines: the i-th line holds i asterisks (*).",
     "n = int(input())\nfor i in range(1, n + 1):\n    print('*' * i)\n",
     lambda s: "\n".join("*" * i for i in range(1, nums(s)[0] + 1)), ["1\n", "3\n", "5\n", "2\n"]),
    ("mean", "The first line holds n, the second n integers. Print their mean with exactly two digits after the "
     "decimal point.",
     "n = int(input())\nv = list(map(int, input().split()))\nprint(f'{sum(v) / n:.2f}')\n",
     lambda s: f"{sum(nums(s.split(chr(10), 1)[1])) / nums(s)[0]:.2f}",
     [list_input([1, 2, 3, 4]), list_input([5]), list_input([1, 2]), list_input([-3, 10, 7])]),
    ("leap_year", "Read a year. Print YES if it is a leap year in the Gregorian calendar, otherwise NO.",
     "y = int(input())\nprint('YES' if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 'NO')\n",
     lambda s: yn((nums(s)[0] % 4 == 0 and nums(s)[0] % 100 != 0) or nums(s)[0] % 400 == 0),
     ["2000\n", "1900\n", "2024\n", "2023\n"]),
    ("run_length", "Read a string of lowercase letters. Print its run-length encoding: each run of equal "
     "letters as the letter followed by the run's length (aaabcc -> a3b1c2).",
     "s = input().strip()\nout = []\ni = 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n"
     "        j += 1\n    out.append(s[i] + str(j - i))\n    i = j\nprint(''.join(out))\n",
     lambda s: rle(s.strip()), ["aaabcc\n", "a\n", "abc\n", "zzzzzzzzzzzz\n"]),
    ("transpose", "The first line holds r and c, then r lines of c integers each. Print the transposed matrix: "
     "c lines of r integers separated by spaces.",
     "r, c = map(int, input().split())\nm = [input().split() for _ in range(r)]\nfor j in range(c):\n"
     "    print(' '.join(m[i][j] for i in range(r)))\n",
     transpose, ["2 3\n1 2 3\n4 5 6\n", "1 1\n7\n", "3 1\n1\n2\n3\n", "2 2\n1 2\n3 4\n"]),
    ("anagram", "Read two words, one per line. Print YES if one is an anagram of the other, otherwise NO.",
     "a = input().strip()\nb = input().strip()\nprint('YES' if sorted(a) == sorted(b) else 'NO')\n",
     lambda s: yn(sorted(s.split("\n")[0].strip()) == sorted(s.split("\n")[1].strip())),
     ["listen\nsilent\n", "abc\nabd\n", "a\na\n", "aab\nabb\n"]),
    ("sum_all", "The input holds integers separated by spaces and newlines, on any number of lines. Print their "
     "sum.",
     "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n",
     lambda s: str(sum(nums(s))), ["1 2 3\n", "5\n6\n7\n", "-1 1\n-2 2\n", "100\n"]),
    ("collatz", "Read n (n >= 1). Repeatedly replace n by n / 2 if it is even, or by 3n + 1 if it is odd, until "
     "it is 1. Print how many steps this takes.",
     "n = int(input())\nsteps = 0\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1\n    steps += 1\n"
     "print(steps)\n",
     lambda s: str(collatz(nums(s)[0])), ["1\n", "6\n", "27\n", "16\n"]),
    ("caesar", "The first line holds k (0 <= k < 26), the second a line of text. Shift every letter k places "
     "forward in the alphabet, wrapping around and keeping its case; leave other characters as they are.",
     "k = int(input())\nt = input()\nout = []\nfor ch in t:\n    if 'a' <= ch <= 'z':\n"
     "        out.append(chr((ord(ch) - 97 + k) % 26 + 97))\n    elif 'A' <= ch <= 'Z':\n"
     "        out.append(chr((ord(ch) - 65 + k) % 26 + 65))\n    else:\n        out.append(ch)\nprint(''.join(out))\n",
     lambda s: caesar(int(s.split("\n")[0]), s.split("\n")[1]), ["3\nabc xyz\n", "0\nHello\n", "13\nHello, World!\n",
                                                                 "25\nZz\n"]),
    ("brackets", "Read a line of the characters ()[]{}. Print YES if the brackets are balanced and properly "
     "nested, otherwise NO.",
     "s = input().strip()\npairs = {')': '(', ']': '[', '}': '{'}\nstack = []\nok = True\nfor ch in s:\n"
     "    if ch in '([{':\n        stack.append(ch)\n    elif not stack or stack.pop() != pairs[ch]:\n"
     "        ok = False\n        break\nprint('YES' if ok and not stack else 'NO')\n",
     lambda s: yn(balanced(s.strip())), ["()[]{}\n", "([)]\n", "((\n", "{[()()]}\n"]),
]


def run(program, stdin):
    p = subprocess.run([PY, "-c", program], input=stdin, capture_output=True, text=True, timeout=10)
    return p.returncode, p.stdout


def build():
    lines, names = [], set()
    for index, (name, prompt, ref, oracle, inputs) in enumerate(PROBLEMS):
        assert name not in names, name
        names.add(name)
        tests = [{"input": i, "output": oracle(i) + "\n"} for i in inputs]
        for t in tests:
            rc, out = run(ref, t["input"])
            if rc != 0 or out != t["output"]:
                sys.exit(f"{name}: reference gives {out!r} (status {rc}) for {t['input']!r}, oracle {t['output']!r}")
        # A fixed held-out set: every fifth problem.
        line = {"name": name, "prompt": prompt, "tests": tests, "reference": ref,
                "split": "eval" if index % 5 == 4 else "train"}
        lines.append(json.dumps(line))
    return "\n".join(lines) + "\n"


def main():
    text = build()
    if "--check" in sys.argv:
        with open(OUT) as f:
            if f.read() != text:
                sys.exit(f"{OUT} is out of date: run {sys.argv[0]}")
        print(f"{OUT}: {len(PROBLEMS)} problems, up to date")
        return
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(PROBLEMS)} problems")


if __name__ == "__main__":
    main()
