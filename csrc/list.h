/* list.h - intrusive circular doubly linked lists (header only, Lua-free) */
#ifndef TETHER_LIST_H
#define TETHER_LIST_H

/*
** A list is a pointer to its first node (NULL when empty); each node holds
** a TT_LINK member.  The last node is head->F.prev, so appending is O(1) and
** iteration from the head visits nodes in insertion order.  Arguments must
** be plain lvalues: the macros evaluate them more than once.
*/
#define TT_LINK(T) struct { T *next, *prev; }

#define TT_LIST_APPEND(head, node, F) do {                                  \
    if ((head) == NULL) {                                                   \
      (head) = (node); (node)->F.next = (node)->F.prev = (node);            \
    } else {                                                                \
      (node)->F.next = (head); (node)->F.prev = (head)->F.prev;             \
      (head)->F.prev->F.next = (node); (head)->F.prev = (node);             \
    }                                                                       \
  } while (0)

#define TT_LIST_REMOVE(head, node, F) do {                                  \
    if ((node)->F.next == (node)) (head) = NULL;                            \
    else {                                                                  \
      (node)->F.prev->F.next = (node)->F.next;                              \
      (node)->F.next->F.prev = (node)->F.prev;                              \
      if ((head) == (node)) (head) = (node)->F.next;                        \
    }                                                                       \
    (node)->F.next = (node)->F.prev = NULL;                                 \
  } while (0)

#define TT_LIST_LINKED(node, F) ((node)->F.next != NULL)

#endif
