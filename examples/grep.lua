-- grep.lua: search a directory tree for a Lua pattern, matching in worker threads.
--
--   lua5.4 examples/grep.lua [options] PATTERN [PATH...]     (default PATH: .)
--
--   -j N        read at most N files at once (default 32)
--   -t N        match in at most N worker threads at once (default: thread.limiter.total,
--               the pool size - 1); -t 0 matches in the main thread (the one-core baseline)
--   -c          print only the number of matching lines
--   -i          ignore case (the pattern is lowered, and so is each line)
--
-- Prints "path:line:text" for every line that contains a match, like grep -rn.
-- The walk uses tether.fs.dir (links are not followed), files are read
-- concurrently with tether.fs.read_file, and batches of files are matched by
-- tether.thread.run. Files that look binary (a NUL in their first 8 KiB) are
-- skipped. Ctrl-C stops everything cleanly (the workers are interrupted) and
-- exits with status 130.
local tether = require("tether")
local fs, thread = tether.fs, tether.thread

local BATCH = 256 * 1024        -- bytes of text per worker call

-- ---- options ---------------------------------------------------------------

local function usage(msg)
  io.stderr:write("grep.lua: ", msg, "\nusage: lua5.4 examples/grep.lua [-j N] [-t N] [-c] [-i] PATTERN [PATH...]\n")
  os.exit(2)
end

local opts = { jobs = 32, threads = thread.limiter.total, count = false, icase = false }
local args, i = {}, 1
while i <= #arg do
  local a = arg[i]
  if a == "-j" or a == "-t" then
    local n = math.tointeger(tonumber(arg[i + 1]))
    if not n or n < (a == "-j" and 1 or 0) then usage("bad number after " .. a) end
    if a == "-j" then opts.jobs = n else opts.threads = n end
    i = i + 2
  elseif a == "-c" then opts.count = true; i = i + 1
  elseif a == "-i" then opts.icase = true; i = i + 1
  elseif a:sub(1, 1) == "-" and a ~= "-" and #args == 0 then usage("unknown option " .. a)
  else args[#args + 1] = a; i = i + 1 end
end
local pattern = args[1] or usage("no pattern")
local roots = { table.unpack(args, 2) }
if #roots == 0 then roots[1] = "." end
-- -i: the text is lowered, and so are the pattern's letters, except a class
-- after "%" (%A, %S... keep their meaning).
if opts.icase then pattern = pattern:gsub("(%%?)(.)", function(esc, c) return esc .. (esc == "" and c:lower() or c) end) end
do
  local ok, err = pcall(string.find, "", pattern)
  if not ok then usage("bad pattern: " .. tostring(err):gsub("^.-:%d+: ", "")) end
end

-- ---- matching (runs in a worker: no upvalues, only its arguments) -----------

-- For each text, the lines that contain a match of `pat`, as "path:n:line\n"
-- (or, when `count_only`, just how many). An unanchored pattern is searched
-- in the whole text first, since most lines do not match, and each candidate
-- is confirmed within its own line; an anchored one ("^...") is tried on
-- every line.
local function match_batch(pat, icase, count_only, paths, texts)
  local find, sub, gsub = string.find, string.sub, string.gsub
  local anchored = sub(pat, 1, 1) == "^"
  local out, count = {}, 0
  for k = 1, #texts do
    local text = texts[k]
    local hay = icase and text:lower() or text
    local path = paths[k]
    local function hit(line, ls, le)
      count = count + 1
      if not count_only then out[#out + 1] = path .. ":" .. line .. ":" .. sub(text, ls, le - 1) .. "\n" end
    end
    if anchored then
      local ls, line, n = 1, 1, #hay
      while ls <= n do
        local le = find(hay, "\n", ls, true) or n + 1
        if find(sub(hay, ls, le - 1), pat) then hit(line, ls, le) end
        line, ls = line + 1, le + 1
      end
    else
      local pos, line, counted = 1, 1, 1      -- `line` is the number of the line at `counted`
      while pos <= #hay do
        local s = find(hay, pat, pos)
        if not s then break end
        local ls = s
        while ls > 1 and sub(hay, ls - 1, ls - 1) ~= "\n" do ls = ls - 1 end
        local le = find(hay, "\n", s, true) or #hay + 1
        if find(sub(hay, ls, le - 1), pat) then  -- not a match that spans lines
          local _, nl = gsub(sub(hay, counted, ls - 1), "\n", "")
          line, counted = line + nl, ls
          hit(line, ls, le)
          pos = le + 1
        else
          pos = s + 1
        end
      end
    end
  end
  return count_only and "" or table.concat(out), count
end

-- ---- the pipeline ----------------------------------------------------------

local total = 0

local function emit(text, n)
  total = total + n
  if text ~= "" then io.stdout:write(text) end
end

-- Hand a batch to a worker (or match it here with -t 0).
local function match(b)
  if opts.threads == 0 then
    emit(match_batch(pattern, opts.icase, opts.count, b.paths, b.texts))
    tether.checkpoint()
  else
    emit(thread.run({ cancel = "interrupt" }, match_batch, pattern, opts.icase, opts.count, b.paths, b.texts))
  end
end

local function main()
  if opts.threads > 0 then thread.limiter.total = opts.threads end
  tether.with_group({ limit = math.max(1, opts.threads) + 1 }, function(matchers)
    local batch = { paths = {}, texts = {}, bytes = 0 }
    local function flush()
      if #batch.paths == 0 then return end
      local b = batch
      batch = { paths = {}, texts = {}, bytes = 0 }
      matchers:spawn(match, b)                -- waits while every matcher is busy
    end
    local function add(path, text)
      batch.paths[#batch.paths + 1] = path
      batch.texts[#batch.texts + 1] = text
      batch.bytes = batch.bytes + #text
      if batch.bytes >= BATCH then flush() end
    end

    tether.with_group({ limit = opts.jobs }, function(readers)
      local function read(path)
        local ok, text = pcall(fs.read_file, path)
        if not ok then
          if not tether.IOError:is(text) then error(text, 0) end     -- Cancelled, or a bug
          io.stderr:write("grep.lua: ", tostring(text), "\n")
          return
        end
        if not text:sub(1, 8192):find("\0", 1, true) then add(path, text) end
      end
      local function walk(path)
        local ok, err = pcall(function()
          for name, kind in fs.dir(path) do
            local p = path == "/" and "/" .. name or path .. "/" .. name
            if kind == "directory" then walk(p)
            elseif kind == "file" then readers:spawn(read, p) end
          end
        end)
        if not ok then
          if not tether.IOError:is(err) then error(err, 0) end
          io.stderr:write("grep.lua: ", tostring(err), "\n")
        end
      end
      for _, root in ipairs(roots) do
        local ok, st = pcall(fs.stat, root)
        if not ok then io.stderr:write("grep.lua: ", tostring(st), "\n")
        elseif st.type == "directory" then walk((root:gsub("(.)/+$", "%1")))
        else readers:spawn(read, root) end
      end
    end)
    flush()
  end)
end

local ok, err = pcall(tether.run, main)
if opts.count then io.stdout:write(total, "\n") end
io.stdout:flush()
if not ok then
  if tether.Interrupted and tether.Interrupted:is(err) then
    io.stderr:write("grep.lua: interrupted\n")
    os.exit(130)
  end
  io.stderr:write(tostring(err), "\n")
  os.exit(2)
end
os.exit(total > 0 and 0 or 1)
