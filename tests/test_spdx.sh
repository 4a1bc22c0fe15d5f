#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Every source file git tracks carries the licence line
# "SPDX-License-Identifier: BSD-2-Clause" (LICENSE has the text);
# scripts/spdx.sh says which kinds of file are source, and adds the line.
top_srcdir=${top_srcdir:-.}
exec "$top_srcdir/scripts/spdx.sh" check
